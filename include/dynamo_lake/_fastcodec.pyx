# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# cython: cdivision=True, infer_types=False
"""The compiled fast path of the item codec (optional; :mod:`dynamo_lake.codec` is the
reference).

One walk over a parsed item (the dict ``orjson.loads`` gave) writes its canonical ``data``
JSON straight into a C buffer: keys sorted by code point at every depth, compact, UTF-8,
``N`` digits verbatim, sets in canonical order, ``B`` as given when it is already standard
padded base64. :func:`row` then hashes ``op \\x1f time_stamp \\x1f data`` and builds the
row, uuid included, without leaving C for the common types.

It reads the item and never changes it. Anything it is not sure to write exactly as the
pure codec would (a number spelling the pure codec rewrites, non-canonical base64, lone
surrogates, an unknown tag, a wrong type, nesting deeper than ``MAX_DEPTH``, any Python
error) makes it *decline* (return ``None``): the caller then runs the pure codec on the
untouched item, which produces the same bytes or the error with its attribute path.
Declining is always safe; accepting is only done for what the differential tests pin down.
"""

from cpython.ref cimport PyObject, Py_DECREF, Py_INCREF
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcmp, memcpy
from libc.stdlib cimport qsort

import binascii
import hashlib

cdef extern from "Python.h":
    ctypedef unsigned char Py_UCS1
    ctypedef unsigned short Py_UCS2
    bint PyUnicode_CheckExact(object)
    bint PyDict_CheckExact(object)
    bint PyList_CheckExact(object)
    bint PyLong_CheckExact(object)
    bint PyBytes_CheckExact(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    int PyUnicode_KIND(object)
    void* PyUnicode_DATA(object)
    bint PyUnicode_IS_ASCII(object)
    Py_UCS1* PyUnicode_1BYTE_DATA(object)
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    object PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)
    bint PyDict_Next(object, Py_ssize_t*, PyObject**, PyObject**)
    Py_ssize_t PyDict_GET_SIZE(object)
    PyObject* PyDict_GetItem(object, object)
    object PyDict_Keys(object)
    Py_ssize_t PyList_GET_SIZE(object)
    PyObject* PyList_GET_ITEM(object, Py_ssize_t)
    int PyList_Sort(object) except -1
    object PyList_GetSlice(object, Py_ssize_t, Py_ssize_t)
    object PyBytes_FromStringAndSize(const char*, Py_ssize_t)
    char* PyBytes_AS_STRING(object)
    Py_ssize_t PyBytes_GET_SIZE(object)
    void PyObject_GC_UnTrack(void*)
    long long PyLong_AsLongLongAndOverflow(object, int*) except? -1

#: Nesting (maps and lists) beyond this is declined: DynamoDB allows 32 levels, and the
#: pure codec decides what deeper input means (orjson refuses beyond 255).
MAX_DEPTH = 64
cdef int _MAX_DEPTH = MAX_DEPTH

# Returned by the writers: written, or declined (no exception is set then).
cdef enum:
    OK = 0
    DECLINE = 1

cdef struct Buffer:
    char* data
    Py_ssize_t length
    Py_ssize_t capacity
    bint on_heap

cdef enum:
    STACK_BYTES = 4096

# The escape of each ASCII byte in a JSON string as orjson writes it: 0 = as is,
# a letter = backslash and that letter, 'u' = \u00XX (lowercase hex).
cdef char _ESCAPE[128]
cdef int _c
for _c in range(128):
    _ESCAPE[_c] = 0
for _c in range(32):
    _ESCAPE[_c] = b'u'
_ESCAPE[8] = b'b'
_ESCAPE[9] = b't'
_ESCAPE[10] = b'n'
_ESCAPE[12] = b'f'
_ESCAPE[13] = b'r'
_ESCAPE[34] = b'"'
_ESCAPE[92] = b'\\'

cdef const char* _HEX = b"0123456789abcdef"
cdef const char* _VARIANT = b"89ab"

# base64's standard alphabet: the 6-bit value of each ASCII byte, or -1.
cdef signed char _B64[128]
for _c in range(128):
    _B64[_c] = -1
cdef const char* _B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
for _c in range(64):
    _B64[<unsigned char>_B64_ALPHABET[_c]] = _c

_sha256 = hashlib.sha256
_a2b_base64 = binascii.a2b_base64
_tuple_new = tuple.__new__
# --- the buffer ------------------------------------------------------------------------


cdef int _reserve(Buffer* out, Py_ssize_t extra) except -1:
    cdef Py_ssize_t wanted = out.length + extra
    cdef Py_ssize_t capacity
    cdef char* grown
    if wanted <= out.capacity:
        return 0
    capacity = out.capacity * 2
    if capacity < wanted:
        capacity = wanted
    if out.on_heap:
        grown = <char*>realloc(out.data, capacity)
    else:
        grown = <char*>malloc(capacity)
        if grown != NULL:
            memcpy(grown, out.data, out.length)
    if grown == NULL:
        raise MemoryError()
    out.data = grown
    out.capacity = capacity
    out.on_heap = True
    return 0


cdef inline int _put(Buffer* out, char byte) except -1:
    if out.length >= out.capacity:
        _reserve(out, 1)
    out.data[out.length] = byte
    out.length += 1
    return 0


cdef int _put_bytes(Buffer* out, const char* text, Py_ssize_t size) except -1:
    _reserve(out, size)
    memcpy(out.data + out.length, text, size)
    out.length += size
    return 0


# --- scalars ---------------------------------------------------------------------------


cdef int _write_string(Buffer* out, object text) except -1:
    """A str as a JSON string, UTF-8, escaped as orjson does. Declines lone surrogates."""
    cdef Py_ssize_t size = PyUnicode_GET_LENGTH(text)
    cdef int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef Py_ssize_t index, start = 0
    cdef unsigned int code
    cdef char escape
    cdef unsigned char* at
    cdef const Py_UCS1* ascii
    # At most 6 bytes per character (\u00XX), plus the quotes.
    _reserve(out, size * 6 + 2)
    at = <unsigned char*>out.data + out.length
    at[0] = b'"'
    at += 1
    if PyUnicode_IS_ASCII(text):
        # Most names and values: copy the run before the first character to escape.
        ascii = <const Py_UCS1*>data
        while start < size and _ESCAPE[ascii[start]] == 0:
            start += 1
        memcpy(at, ascii, start)
        at += start
    for index in range(start, size):
        if kind == 1:
            code = (<Py_UCS1*>data)[index]
        elif kind == 2:
            code = (<Py_UCS2*>data)[index]
        else:
            code = (<unsigned int*>data)[index]
        if code < 0x80:
            escape = _ESCAPE[code]
            if escape == 0:
                at[0] = <unsigned char>code
                at += 1
            elif escape == b'u':
                at[0] = b'\\'
                at[1] = b'u'
                at[2] = b'0'
                at[3] = b'0'
                at[4] = _HEX[code >> 4]
                at[5] = _HEX[code & 15]
                at += 6
            else:
                at[0] = b'\\'
                at[1] = escape
                at += 2
        elif code < 0x800:
            at[0] = 0xC0 | (code >> 6)
            at[1] = 0x80 | (code & 0x3F)
            at += 2
        elif code < 0x10000:
            if 0xD800 <= code <= 0xDFFF:
                return DECLINE  # a lone surrogate: the pure codec refuses it
            at[0] = 0xE0 | (code >> 12)
            at[1] = 0x80 | ((code >> 6) & 0x3F)
            at[2] = 0x80 | (code & 0x3F)
            at += 3
        else:
            at[0] = 0xF0 | (code >> 18)
            at[1] = 0x80 | ((code >> 12) & 0x3F)
            at[2] = 0x80 | ((code >> 6) & 0x3F)
            at[3] = 0x80 | (code & 0x3F)
            at += 4
    at[0] = b'"'
    at += 1
    out.length = <char*>at - out.data
    return OK


cdef inline bint _digit(Py_UCS1 byte) noexcept:
    return b'0' <= byte <= b'9'


cdef bint _is_json_number(object text) noexcept:
    """``-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?``: written verbatim by both paths."""
    cdef Py_ssize_t size, index = 0
    cdef Py_UCS1* data
    if not PyUnicode_IS_ASCII(text):
        return False
    size = PyUnicode_GET_LENGTH(text)
    data = PyUnicode_1BYTE_DATA(text)
    if index < size and data[index] == b'-':
        index += 1
    if index >= size or not _digit(data[index]):
        return False
    if data[index] == b'0':
        index += 1
    else:
        while index < size and _digit(data[index]):
            index += 1
    if index < size and data[index] == b'.':
        index += 1
        if index >= size or not _digit(data[index]):
            return False
        while index < size and _digit(data[index]):
            index += 1
    if index < size and (data[index] == b'e' or data[index] == b'E'):
        index += 1
        if index < size and (data[index] == b'+' or data[index] == b'-'):
            index += 1
        if index >= size or not _digit(data[index]):
            return False
        while index < size and _digit(data[index]):
            index += 1
    return index == size


cdef bint _is_canonical_base64(object text) noexcept:
    """Standard, padded base64 that decodes and re-encodes to itself (what the pure codec
    writes); anything else (no padding, URL alphabet, blanks, stray bits) is declined."""
    cdef Py_ssize_t size, index, padding = 0
    cdef Py_UCS1* data
    cdef signed char value
    if not PyUnicode_IS_ASCII(text):
        return False
    size = PyUnicode_GET_LENGTH(text)
    if size % 4:
        return False
    if size == 0:
        return True
    data = PyUnicode_1BYTE_DATA(text)
    if data[size - 1] == b'=':
        padding = 2 if data[size - 2] == b'=' else 1
    for index in range(size - padding):
        if _B64[data[index]] < 0:
            return False
    # The bits below the last full byte must be zero, or re-encoding changes the text.
    value = _B64[data[size - padding - 1]]
    if padding == 1 and (value & 0x03):
        return False
    if padding == 2 and (value & 0x0F):
        return False
    return True


cdef int _write_verbatim(Buffer* out, object text, bint quoted) except -1:
    """An ASCII str that needs no escaping (number digits, base64)."""
    cdef Py_ssize_t size = PyUnicode_GET_LENGTH(text)
    _reserve(out, size + 2)
    if quoted:
        out.data[out.length] = b'"'
        out.length += 1
    memcpy(out.data + out.length, PyUnicode_1BYTE_DATA(text), size)
    out.length += size
    if quoted:
        out.data[out.length] = b'"'
        out.length += 1
    return OK


# --- typed values ----------------------------------------------------------------------


cdef struct Entry:
    PyObject* name
    PyObject* value


cdef int _compare_text(PyObject* left, PyObject* right) noexcept:
    """Code point order of two exact str (what ``<`` on str and orjson's key sort give)."""
    cdef object a = <object>left
    cdef object b = <object>right
    cdef Py_ssize_t size_a = PyUnicode_GET_LENGTH(a), size_b = PyUnicode_GET_LENGTH(b)
    cdef Py_ssize_t shorter = size_a if size_a < size_b else size_b
    cdef int kind_a = PyUnicode_KIND(a), kind_b = PyUnicode_KIND(b)
    cdef void* data_a = PyUnicode_DATA(a)
    cdef void* data_b = PyUnicode_DATA(b)
    cdef Py_ssize_t index
    cdef unsigned int code_a, code_b
    cdef int order
    if kind_a == 1 and kind_b == 1:
        order = memcmp(data_a, data_b, shorter)
        if order:
            return order
    else:
        for index in range(shorter):
            code_a = _code_at(kind_a, data_a, index)
            code_b = _code_at(kind_b, data_b, index)
            if code_a != code_b:
                return -1 if code_a < code_b else 1
    if size_a == size_b:
        return 0
    return -1 if size_a < size_b else 1


cdef inline unsigned int _code_at(int kind, void* data, Py_ssize_t index) noexcept:
    if kind == 1:
        return (<Py_UCS1*>data)[index]
    if kind == 2:
        return (<Py_UCS2*>data)[index]
    return (<unsigned int*>data)[index]


cdef int _compare_entries(const void* left, const void* right) noexcept nogil:
    with gil:
        return _compare_text((<Entry*>left).name, (<Entry*>right).name)


cdef void _sort_entries(Entry* entries, Py_ssize_t size) noexcept:
    """Insertion sort for the usual handful of names, qsort beyond."""
    cdef Py_ssize_t index, at
    cdef Entry moving
    if size > 24:
        qsort(entries, size, sizeof(Entry), _compare_entries)
        return
    for index in range(1, size):
        moving = entries[index]
        at = index
        while at > 0 and _compare_text(entries[at - 1].name, moving.name) > 0:
            entries[at] = entries[at - 1]
            at -= 1
        entries[at] = moving


cdef enum:
    STACK_ENTRIES = 32


cdef int _write_object(Buffer* out, object typed_values, int depth) except -1:
    """An item or an ``M``: names sorted by code point, values typed.

    Names and values are held (a reference each) while they are written: writing a ``BS``
    calls Python's sort, and the dict is not ours.
    """
    cdef Py_ssize_t size = PyDict_GET_SIZE(typed_values)
    cdef Py_ssize_t index, position = 0
    cdef Entry stack_entries[STACK_ENTRIES]
    cdef Entry* entries = stack_entries
    cdef PyObject* name
    cdef PyObject* typed
    cdef Py_ssize_t held = 0
    if depth > _MAX_DEPTH:
        return DECLINE
    if size == 0:
        return _put_bytes(out, b"{}", 2)
    if size > STACK_ENTRIES:
        entries = <Entry*>malloc(size * sizeof(Entry))
        if entries == NULL:
            raise MemoryError()
    try:
        while held < size and PyDict_Next(typed_values, &position, &name, &typed):
            if not PyUnicode_CheckExact(<object>name):
                return DECLINE  # only str names compare by code point
            Py_INCREF(<object>name)
            Py_INCREF(<object>typed)
            entries[held].name = name
            entries[held].value = typed
            held += 1
        if held != size:
            return DECLINE
        if size > 1:
            _sort_entries(entries, size)
        _put(out, b'{')
        for index in range(size):
            if index:
                _put(out, b',')
            if _write_string(out, <object>entries[index].name):
                return DECLINE
            _put(out, b':')
            if _write_value(out, <object>entries[index].value, depth):
                return DECLINE
        _put(out, b'}')
        return OK
    finally:
        for index in range(held):
            Py_DECREF(<object>entries[index].name)
            Py_DECREF(<object>entries[index].value)
        if entries != stack_entries:
            free(entries)


cdef inline int _tag_code(object tag) noexcept:
    """The type tag as a small number, 0 for anything else (unknown, wrong case, not str)."""
    cdef Py_ssize_t size
    cdef Py_UCS1* data
    if not PyUnicode_CheckExact(tag) or not PyUnicode_IS_ASCII(tag):
        return 0
    size = PyUnicode_GET_LENGTH(tag)
    data = PyUnicode_1BYTE_DATA(tag)
    if size == 1:
        if data[0] == b'S':
            return 1
        if data[0] == b'N':
            return 2
        if data[0] == b'M':
            return 3
        if data[0] == b'L':
            return 4
        if data[0] == b'B':
            return 5
    elif size == 2 and data[1] == b'S':
        if data[0] == b'S':
            return 6
        if data[0] == b'N':
            return 7
        if data[0] == b'B':
            return 8
    elif size == 4:
        if data[0] == b'B' and data[1] == b'O' and data[2] == b'O' and data[3] == b'L':
            return 9
        if data[0] == b'N' and data[1] == b'U' and data[2] == b'L' and data[3] == b'L':
            return 10
    return 0


cdef int _write_value(Buffer* out, object typed, int depth) except -1:
    """One typed value ``{"<tag>": value}``."""
    cdef Py_ssize_t position = 0
    cdef PyObject* tag_ref
    cdef PyObject* value_ref
    cdef object value
    cdef int code
    if not PyDict_CheckExact(typed) or PyDict_GET_SIZE(typed) != 1:
        return DECLINE
    PyDict_Next(typed, &position, &tag_ref, &value_ref)
    value = <object>value_ref
    code = _tag_code(<object>tag_ref)
    if code == 1:  # S
        if not PyUnicode_CheckExact(value):
            return DECLINE
        return _write_string(out, value)
    if code == 2:  # N
        if not PyUnicode_CheckExact(value) or not _is_json_number(value):
            return DECLINE
        return _write_verbatim(out, value, False)
    if code == 3:  # M
        if not PyDict_CheckExact(value):
            return DECLINE
        return _write_object(out, value, depth + 1)
    if code == 4:  # L
        if not PyList_CheckExact(value):
            return DECLINE
        return _write_list(out, value, depth + 1)
    if code == 5:  # B
        if not PyUnicode_CheckExact(value) or not _is_canonical_base64(value):
            return DECLINE
        return _write_verbatim(out, value, True)
    if code == 9:  # BOOL
        if value is True:
            return _put_bytes(out, b"true", 4)
        if value is False:
            return _put_bytes(out, b"false", 5)
        return DECLINE
    if code == 10:  # NULL
        if value is True:
            return _put_bytes(out, b"null", 4)
        return DECLINE
    if code == 6 or code == 7 or code == 8:
        if not PyList_CheckExact(value):
            return DECLINE
        return _write_set(out, value, code)
    return DECLINE


cdef int _write_list(Buffer* out, object members, int depth) except -1:
    cdef Py_ssize_t index, size = PyList_GET_SIZE(members)
    cdef object member
    if depth > _MAX_DEPTH:
        return DECLINE
    _put(out, b'[')
    for index in range(size):
        if index:
            _put(out, b',')
        # The list is not ours: a member is held while it is written.
        member = <object>PyList_GET_ITEM(members, index)
        if _write_value(out, member, depth):
            return DECLINE
    _put(out, b']')
    return OK


cdef struct Number:
    PyObject* text
    const Py_UCS1* chars
    Py_ssize_t length
    int sign                 # -1, 0 (any zero: -0 == 0), 1
    long long adjusted       # the power of ten of the first significant digit
    const char* digits       # significant digits, no leading or trailing zeros
    Py_ssize_t count


cdef bint _parse_number(Number* number, object text, char* scratch) noexcept:
    """Fill ``number`` from a str that is a JSON number (checked before); False for an
    exponent of more than 9 digits (the pure codec decides about those)."""
    cdef const Py_UCS1* chars = PyUnicode_1BYTE_DATA(text)
    cdef Py_ssize_t size = PyUnicode_GET_LENGTH(text)
    cdef Py_ssize_t at = 0, integer = 0, written = 0, first, last, exponent_digits = 0
    cdef long long exponent = 0
    cdef bint negative = False, negative_exponent = False
    number.text = <PyObject*>text
    number.chars = chars
    number.length = size
    if chars[0] == b'-':
        negative = True
        at = 1
    while at < size and _digit(chars[at]):
        scratch[written] = chars[at]
        written += 1
        at += 1
    integer = written
    if at < size and chars[at] == b'.':
        at += 1
        while at < size and _digit(chars[at]):
            scratch[written] = chars[at]
            written += 1
            at += 1
    if at < size:  # e or E
        at += 1
        if chars[at] == b'-':
            negative_exponent = True
            at += 1
        elif chars[at] == b'+':
            at += 1
        while at < size and chars[at] == b'0':
            at += 1
        while at < size:
            exponent = exponent * 10 + (chars[at] - 48)
            exponent_digits += 1
            at += 1
        if exponent_digits > 9:
            return False
        if negative_exponent:
            exponent = -exponent
    first = 0
    while first < written and scratch[first] == b'0':
        first += 1
    if first == written:
        number.sign = 0
        number.adjusted = 0
        number.digits = scratch
        number.count = 0
        return True
    last = written - 1
    while scratch[last] == b'0':
        last -= 1
    number.sign = -1 if negative else 1
    number.adjusted = (integer - 1 - first) + exponent
    number.digits = scratch + first
    number.count = last - first + 1
    return True


cdef int _compare_numbers(const void* left, const void* right) noexcept nogil:
    """Numeric order, then text order for equal values: the pure codec's (Decimal, text)."""
    cdef const Number* a = <const Number*>left
    cdef const Number* b = <const Number*>right
    cdef int order = 0
    cdef Py_ssize_t shorter
    if a.sign != b.sign:
        return -1 if a.sign < b.sign else 1
    if a.sign != 0:
        if a.adjusted != b.adjusted:
            order = 1 if a.adjusted > b.adjusted else -1
        else:
            shorter = a.count if a.count < b.count else b.count
            order = memcmp(a.digits, b.digits, shorter)
            if order == 0 and a.count != b.count:
                order = 1 if a.count > b.count else -1
        if order:
            return (1 if order > 0 else -1) * a.sign
    shorter = a.length if a.length < b.length else b.length
    order = memcmp(a.chars, b.chars, shorter)
    if order:
        return order
    if a.length == b.length:
        return 0
    return -1 if a.length < b.length else 1


cdef int _write_number_set(Buffer* out, object members) except -1:
    """``NS`` members (JSON numbers, checked) in the pure codec's order, verbatim."""
    cdef Py_ssize_t index, size = PyList_GET_SIZE(members), total = 0
    cdef Number* numbers
    cdef char* scratch
    cdef object member
    if size == 0:
        return _put_bytes(out, b"[]", 2)
    for index in range(size):
        total += PyUnicode_GET_LENGTH(<object>PyList_GET_ITEM(members, index))
    numbers = <Number*>malloc(size * sizeof(Number))
    scratch = <char*>malloc(total + 1)
    if numbers == NULL or scratch == NULL:
        free(numbers)
        free(scratch)
        raise MemoryError()
    try:
        total = 0
        for index in range(size):
            member = <object>PyList_GET_ITEM(members, index)
            if not _parse_number(&numbers[index], member, scratch + total):
                return DECLINE
            total += PyUnicode_GET_LENGTH(member)
        qsort(numbers, size, sizeof(Number), _compare_numbers)
        _put(out, b'[')
        for index in range(size):
            if index:
                _put(out, b',')
            _write_verbatim(out, <object>numbers[index].text, False)
        _put(out, b']')
        return OK
    finally:
        free(numbers)
        free(scratch)


cdef int _write_set(Buffer* out, object members, int code) except -1:
    """``SS`` by code point, ``NS`` by numeric value, ``BS`` by the decoded bytes."""
    cdef Py_ssize_t index, size = PyList_GET_SIZE(members)
    cdef object member, ordered
    for index in range(size):
        member = <object>PyList_GET_ITEM(members, index)
        if not PyUnicode_CheckExact(member):
            return DECLINE
        if code == 7 and not _is_json_number(member):
            return DECLINE
        if code == 8 and not _is_canonical_base64(member):
            return DECLINE
    if code == 7:
        return _write_number_set(out, members)
    if code == 6:
        ordered = PyList_GetSlice(members, 0, size)
        PyList_Sort(ordered)
    else:
        ordered = sorted(members, key=_a2b_base64)
    _put(out, b'[')
    for index in range(size):
        member = <object>PyList_GET_ITEM(ordered, index)
        if index:
            _put(out, b',')
        if code == 6:
            if _write_string(out, member):
                return DECLINE
        else:
            _write_verbatim(out, member, True)
    _put(out, b']')
    return OK


cdef int _write_item(Buffer* out, object item) except -1:
    """OK, or DECLINE with no exception left set: an ``Exception`` declines too (the pure
    codec then raises its own, named error); anything else (KeyboardInterrupt) propagates."""
    cdef int result
    try:
        result = _write_object(out, item, 0)
    except Exception:
        return DECLINE
    return result


# --- entry points ----------------------------------------------------------------------


def data_bytes(item):
    """The canonical ``data`` of a parsed item as UTF-8 bytes, or ``None`` to decline."""
    cdef char stack[STACK_BYTES]
    cdef Buffer out
    if not PyDict_CheckExact(item):
        return None
    out.data = stack
    out.length = 0
    out.capacity = STACK_BYTES
    out.on_heap = False
    try:
        if _write_item(&out, item) != OK:
            return None
        return PyBytes_FromStringAndSize(out.data, out.length)
    finally:
        if out.on_heap:
            free(out.data)


def row(item, op, time_stamp, row_type):
    """The CDC row of a parsed item (``op``, integer µs ``time_stamp``) as a ``row_type``
    (a 4-tuple class: ``dynamo_lake.cdc.CdcRow``), or ``None`` to decline.

    The same row as ``dynamo_lake.cdc`` builds from the pure codec's bytes: uuid from
    sha256 over ``op \\x1f time_stamp \\x1f data``, version 8, RFC 9562 variant.
    """
    if not PyUnicode_CheckExact(op) or op not in ("I", "U", "D"):
        return None
    return _make_row(item, op, time_stamp, row_type)


cdef object _make_row(object item, object op, object time_stamp, object row_type):
    """:func:`row` for an ``op`` already known to be I, U or D."""
    cdef char stack[STACK_BYTES]
    cdef Buffer out
    cdef Py_ssize_t prefix
    cdef long long stamp
    cdef int overflow = 0
    cdef char digits[24]
    cdef int count = 0
    cdef unsigned long long magnitude
    cdef const unsigned char* digest
    cdef Py_UCS1* text
    cdef int index, at
    if not PyDict_CheckExact(item):
        return None
    if not PyLong_CheckExact(time_stamp):
        return None
    stamp = PyLong_AsLongLongAndOverflow(time_stamp, &overflow)
    if overflow:
        return None
    out.data = stack
    out.length = 0
    out.capacity = STACK_BYTES
    out.on_heap = False
    try:
        # op \x1f str(time_stamp) \x1f data
        out.data[0] = PyUnicode_1BYTE_DATA(op)[0]
        out.data[1] = 0x1F
        out.length = 2
        magnitude = <unsigned long long>(-stamp) if stamp < 0 else <unsigned long long>stamp
        while True:
            digits[count] = <char>(48 + magnitude % 10)
            count += 1
            magnitude //= 10
            if magnitude == 0:
                break
        if stamp < 0:
            digits[count] = b'-'
            count += 1
        while count:
            count -= 1
            out.data[out.length] = digits[count]
            out.length += 1
        out.data[out.length] = 0x1F
        out.length += 1
        prefix = out.length
        if _write_item(&out, item) != OK:
            return None
        payload = PyBytes_FromStringAndSize(out.data, out.length)
        data = PyUnicode_DecodeUTF8(out.data + prefix, out.length - prefix, NULL)
    finally:
        if out.on_heap:
            free(out.data)
    hashed = _sha256(payload).digest()
    digest = <const unsigned char*>PyBytes_AS_STRING(hashed)
    uuid = PyUnicode_New(36, 127)
    text = PyUnicode_1BYTE_DATA(uuid)
    # 8-4-4-4-12 hex digits of the first 16 bytes; digit 12 is the version (8), digit 16
    # carries the variant (10xx).
    at = 0
    for index in range(16):
        if index == 4 or index == 6 or index == 8 or index == 10:
            text[at] = b'-'
            at += 1
        text[at] = _HEX[digest[index] >> 4]
        text[at + 1] = _HEX[digest[index] & 15]
        at += 2
    text[14] = b'8'
    text[19] = _VARIANT[(digest[8] >> 4) & 3]
    result = _tuple_new(row_type, (uuid, op, time_stamp, data))
    # A row holds three str and an int: it can never be part of a reference cycle, so the
    # garbage collector need not track it (it would walk every buffered row again and again;
    # CPython untracks such plain tuples itself, but not instances of a tuple subclass).
    PyObject_GC_UnTrack(<PyObject*>result)
    return result


# --- whole export lines ----------------------------------------------------------------

_I = "I"
_U = "U"
_D = "D"


cdef object _get(object mapping, object key):
    """``mapping[key]`` of an exact dict, or None (absent, or not an exact dict)."""
    cdef PyObject* found
    if not PyDict_CheckExact(mapping):
        return None
    found = PyDict_GetItem(mapping, key)
    if found == NULL:
        return None
    return <object>found


cdef object _micros(object text, long long start, long long end):
    """``Metadata.WriteTimestampMicros.N``: 1 to 19 ASCII digits in [start, end), or None."""
    cdef Py_ssize_t size, index
    cdef Py_UCS1* data
    cdef long long value = 0
    if not PyUnicode_CheckExact(text) or not PyUnicode_IS_ASCII(text):
        return None
    size = PyUnicode_GET_LENGTH(text)
    if size < 1 or size > 18:  # 18 digits cannot overflow; longer ones go the pure way
        return None
    data = PyUnicode_1BYTE_DATA(text)
    for index in range(size):
        if not _digit(data[index]):
            return None
        value = value * 10 + (data[index] - 48)
    if value < start or value >= end:
        return None
    return value


cdef object _line_row(object line, object row_type, object export_time, bint new_and_old,
                      long long start, long long end):
    """The row of one parsed export line (full when ``export_time`` is an int), or None."""
    cdef object image, new_image, old_image, stamp, metadata
    if not PyDict_CheckExact(line):
        return None
    if export_time is not None:
        image = _get(line, "Item")
        if image is None or not PyDict_CheckExact(image):
            return None
        return _make_row(image, _I, export_time, row_type)
    metadata = _get(_get(line, "Metadata"), "WriteTimestampMicros")
    stamp = _micros(_get(metadata, "N"), start, end)
    if stamp is None:
        return None
    new_image = _get(line, "NewImage")
    old_image = _get(line, "OldImage")
    # Present but not an object (an error), or null (which the pure path reads as absent):
    # both go the pure way.
    if (new_image is None and "NewImage" in line) or (old_image is None and "OldImage" in line):
        return None
    if new_image is not None:
        if not PyDict_CheckExact(new_image) or (old_image is not None and not PyDict_CheckExact(old_image)):
            return None
        return _make_row(new_image, _I if old_image is None and new_and_old else _U, stamp, row_type)
    if old_image is not None:
        if not PyDict_CheckExact(old_image):
            return None
        return _make_row(old_image, _D, stamp, row_type)
    image = _get(line, "Keys")
    if image is None or not PyDict_CheckExact(image) or not image:
        return None
    return _make_row(image, _D, stamp, row_type)


cdef bint _blank(object line) noexcept:
    """Bytes that ``bytes.strip()`` empties: only ASCII whitespace (or nothing)."""
    cdef const char* data
    cdef Py_ssize_t index, size
    cdef char byte
    if not PyBytes_CheckExact(line):
        return False
    data = PyBytes_AS_STRING(line)
    size = PyBytes_GET_SIZE(line)
    for index in range(size):
        byte = data[index]
        if byte != b' ' and not (9 <= byte <= 13):
            return False
    return True


def export_rows(list lines, Py_ssize_t start, list rows, object loads, object row_type,
                object export_time, bint new_and_old, long long window_start,
                long long window_end):
    """Append the rows of ``lines[start:]`` (raw export lines) to ``rows`` until a line this
    path declines; return that line's index (``len(lines)`` when all were taken).

    Full export when ``export_time`` is an int; else incremental, with the write time
    accepted in ``[window_start, window_end)`` and ``new_and_old`` for the
    NEW_AND_OLD_IMAGES view. The caller handles a declined line the pure way (blank lines,
    malformed JSON, anything the row path declines) and calls again after it.
    """
    cdef Py_ssize_t index, size = len(lines)
    cdef object line, parsed, built
    for index in range(start, size):
        line = <object>PyList_GET_ITEM(lines, index)
        if _blank(line):
            continue  # as the pure loop skips it (``not line.strip()``)
        try:
            parsed = loads(line)
        except Exception:
            return index
        built = _line_row(parsed, row_type, export_time, new_and_old, window_start, window_end)
        if built is None:
            return index
        rows.append(built)
    return size
