# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# cython: cdivision=True, infer_types=False
"""The compiled fast path of the item codec (optional; :mod:`dynamo_lake.codec` is the
reference).

One walk over a parsed item (the dict ``orjson.loads`` gave) writes its canonical ``data``
JSON straight into a C buffer: keys sorted by code point at every depth, compact, UTF-8,
``N`` digits verbatim, sets in canonical order, ``B`` as given when it is already standard
padded base64. :func:`row` then hashes ``op \\x1f time_stamp \\x1f data`` (OpenSSL's
one-shot ``SHA256``) and builds the row, uuid included, without leaving C for the common
types. For whole export files, :class:`RowColumns` does the same per line and keeps the rows
as Arrow-layout columns, with no Python object per row.

It reads the item and never changes it. Anything it is not sure to write exactly as the
pure codec would (a number spelling the pure codec rewrites, non-canonical base64, lone
surrogates, an unknown tag, a wrong type, nesting deeper than ``MAX_DEPTH``, any Python
error) makes it *decline* (return ``None``): the caller then runs the pure codec on the
untouched item, which produces the same bytes or the error with its attribute path.
Declining is always safe; accepting is only done for what the differential tests pin down.
"""

from cpython.ref cimport PyObject, Py_DECREF, Py_INCREF
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memchr, memcmp, memcpy, memset
from libc.stdlib cimport qsort

import binascii

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
    object PyLong_FromLongLong(long long)
    object PyUnicode_AsUTF8String(object)

cdef extern from "openssl/sha.h" nogil:
    # The one-shot digest (not deprecated in OpenSSL 3): no hash object per row.
    unsigned char* SHA256(const unsigned char* data, size_t size, unsigned char* digest)

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
    Py_ssize_t prefix  # _hash_item: where ``data`` starts after ``op \x1f time_stamp \x1f``

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
    if capacity < STACK_BYTES:
        capacity = STACK_BYTES
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


cdef inline bint _digit(Py_UCS1 byte) noexcept nogil:
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
    cdef long long stamp
    cdef int overflow = 0
    cdef char uuid_text[36]
    cdef char stack[STACK_BYTES]
    cdef Buffer scratch
    if not PyUnicode_CheckExact(op) or op not in ("I", "U", "D"):
        return None
    if not PyDict_CheckExact(item) or not PyLong_CheckExact(time_stamp):
        return None
    stamp = PyLong_AsLongLongAndOverflow(time_stamp, &overflow)
    if overflow:
        return None
    scratch.data = stack
    scratch.capacity = STACK_BYTES
    scratch.on_heap = False
    try:
        if _hash_item(&scratch, item, PyUnicode_1BYTE_DATA(op)[0], stamp, uuid_text) != OK:
            return None
        data = PyUnicode_DecodeUTF8(scratch.data + scratch.prefix, scratch.length - scratch.prefix, NULL)
    finally:
        if scratch.on_heap:
            free(scratch.data)
    uuid = PyUnicode_New(36, 127)
    memcpy(PyUnicode_1BYTE_DATA(uuid), uuid_text, 36)
    result = _tuple_new(row_type, (uuid, op, time_stamp, data))
    # A row holds three str and an int: it can never be part of a reference cycle, so the
    # garbage collector need not track it (it would walk every buffered row again and again;
    # CPython untracks such plain tuples itself, but not instances of a tuple subclass).
    PyObject_GC_UnTrack(<PyObject*>result)
    return result


cdef int _hash_item(Buffer* scratch, object item, char op, long long stamp,
                    char* uuid_text) except -1:
    """Write ``op \\x1f time_stamp \\x1f data`` of an exact dict ``item`` into ``scratch``
    (its ``prefix`` then says where ``data`` starts) and the row's uuid (36 ASCII bytes)
    into ``uuid_text``; OK, or DECLINE.

    ``scratch`` is emptied first and grows as needed; its owner frees ``data`` when
    ``on_heap``.
    """
    cdef char digits[24]
    cdef int count = 0
    cdef unsigned long long magnitude
    cdef unsigned char digest[32]
    cdef int index, at
    scratch.length = 0
    _reserve(scratch, 48)  # op, separators and up to 20 digits
    scratch.data[0] = op
    scratch.data[1] = 0x1F
    scratch.length = 2
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
        scratch.data[scratch.length] = digits[count]
        scratch.length += 1
    scratch.data[scratch.length] = 0x1F
    scratch.length += 1
    scratch.prefix = scratch.length
    if _write_item(scratch, item) != OK:
        return DECLINE
    SHA256(<const unsigned char*>scratch.data, scratch.length, digest)
    # 8-4-4-4-12 hex digits of the first 16 bytes; digit 12 is the version (8), digit 16
    # carries the variant (10xx).
    at = 0
    for index in range(16):
        if index == 4 or index == 6 or index == 8 or index == 10:
            uuid_text[at] = b'-'
            at += 1
        uuid_text[at] = _HEX[digest[index] >> 4]
        uuid_text[at + 1] = _HEX[digest[index] & 15]
        at += 2
    uuid_text[14] = b'8'
    uuid_text[19] = _VARIANT[(digest[8] >> 4) & 3]
    return OK


# --- rows as columns -------------------------------------------------------------------

cdef enum:
    UUID_BYTES = 36
    MAX_COLUMN_BYTES = 2147483647  # Arrow's string offsets are int32


cdef void _empty(Buffer* column) noexcept:
    """A buffer with no memory yet; the first write allocates it (on the heap)."""
    column.data = NULL
    column.length = 0
    column.capacity = 0
    column.on_heap = True
    column.prefix = 0


cdef class RowColumns:
    """A batch of CDC rows held as the four columns in Arrow's layout, in C buffers.

    The compiled loop (:meth:`take_export_lines`) writes rows here without making a Python
    object per row; :meth:`append` adds a row the pure codec built, in order. It is a
    sequence of ``row_type`` rows (built on access, for tests and odd callers), and
    :meth:`arrow_buffers` hands the columns over for ``pyarrow.Array.from_buffers``.
    """

    cdef object row_type
    cdef Buffer _uuids     # 36 ASCII bytes per row
    cdef Buffer _ops       # 1 byte per row
    cdef Buffer _stamps    # int64 µs per row
    cdef Buffer _data      # each row's data (UTF-8), back to back
    cdef Buffer _offsets   # int32 per row, plus the leading 0: where each data starts
    cdef Buffer _scratch
    cdef Py_ssize_t _rows
    cdef readonly long long min_stamp
    cdef readonly long long max_stamp

    def __cinit__(self, row_type):
        cdef int zero = 0
        self.row_type = row_type
        _empty(&self._uuids)
        _empty(&self._ops)
        _empty(&self._stamps)
        _empty(&self._data)
        _empty(&self._offsets)
        _empty(&self._scratch)
        self._rows = 0
        self.min_stamp = 0
        self.max_stamp = 0
        _put_bytes(&self._offsets, <const char*>&zero, sizeof(int))

    def __dealloc__(self):
        free(self._uuids.data)
        free(self._ops.data)
        free(self._stamps.data)
        free(self._data.data)
        free(self._offsets.data)
        free(self._scratch.data)

    def __len__(self):
        return self._rows

    cdef int _add(self, const char* uuid_text, char op, long long stamp, const char* data,
                  Py_ssize_t size) except -1:
        cdef int end
        if self._data.length + size > MAX_COLUMN_BYTES:
            raise OverflowError("a batch of rows holds at most 2 GiB of data")
        _put_bytes(&self._data, data, size)
        end = <int>self._data.length
        _put_bytes(&self._offsets, <const char*>&end, sizeof(int))
        _put_bytes(&self._uuids, uuid_text, UUID_BYTES)
        _put(&self._ops, op)
        _put_bytes(&self._stamps, <const char*>&stamp, sizeof(long long))
        if self._rows == 0 or stamp < self.min_stamp:
            self.min_stamp = stamp
        if self._rows == 0 or stamp > self.max_stamp:
            self.max_stamp = stamp
        self._rows += 1
        return 0

    def append(self, row):
        """Add a row (uuid, op, time_stamp, data) built elsewhere (the pure codec)."""
        cdef int overflow = 0
        cdef long long stamp
        uuid, op, time_stamp, data = row
        uuid_bytes = PyUnicode_AsUTF8String(uuid)
        op_bytes = PyUnicode_AsUTF8String(op)
        data_bytes = PyUnicode_AsUTF8String(data)
        if PyBytes_GET_SIZE(uuid_bytes) != UUID_BYTES or PyBytes_GET_SIZE(op_bytes) != 1:
            raise ValueError(f"not a CDC row: uuid {uuid!r}, op {op!r}")
        stamp = PyLong_AsLongLongAndOverflow(time_stamp, &overflow)
        if overflow:
            raise OverflowError(f"time_stamp {time_stamp} is beyond 64-bit µs")
        self._add(PyBytes_AS_STRING(uuid_bytes), PyBytes_AS_STRING(op_bytes)[0], stamp,
                  PyBytes_AS_STRING(data_bytes), PyBytes_GET_SIZE(data_bytes))

    def __getitem__(self, Py_ssize_t index):
        cdef const int* offsets = <const int*>self._offsets.data
        if index < 0:
            index += self._rows
        if index < 0 or index >= self._rows:
            raise IndexError("row index out of range")
        uuid = PyUnicode_DecodeUTF8(self._uuids.data + index * UUID_BYTES, UUID_BYTES, NULL)
        op = PyUnicode_DecodeUTF8(self._ops.data + index, 1, NULL)
        stamp = PyLong_FromLongLong((<const long long*>self._stamps.data)[index])
        data = PyUnicode_DecodeUTF8(self._data.data + offsets[index],
                                    offsets[index + 1] - offsets[index], NULL)
        return _tuple_new(self.row_type, (uuid, op, stamp, data))

    def arrow_buffers(self):
        """The columns as bytes, in Arrow's layout (native byte order, int32 offsets):
        ``(uuid_offsets, uuids, op_offsets, ops, time_stamps, data_offsets, data)``."""
        cdef Py_ssize_t index
        cdef int* uuid_offsets
        cdef int* op_offsets
        uuid_buffer = PyBytes_FromStringAndSize(NULL, (self._rows + 1) * sizeof(int))
        op_buffer = PyBytes_FromStringAndSize(NULL, (self._rows + 1) * sizeof(int))
        uuid_offsets = <int*>PyBytes_AS_STRING(uuid_buffer)
        op_offsets = <int*>PyBytes_AS_STRING(op_buffer)
        for index in range(self._rows + 1):
            uuid_offsets[index] = <int>(index * UUID_BYTES)
            op_offsets[index] = <int>index
        return (
            uuid_buffer,
            PyBytes_FromStringAndSize(self._uuids.data, self._uuids.length),
            op_buffer,
            PyBytes_FromStringAndSize(self._ops.data, self._ops.length),
            PyBytes_FromStringAndSize(self._stamps.data, self._stamps.length),
            PyBytes_FromStringAndSize(self._offsets.data, self._offsets.length),
            PyBytes_FromStringAndSize(self._data.data, self._data.length),
        )

    def take_export_lines(self, list lines, Py_ssize_t start, object loads,
                          object export_time, bint new_and_old, long long window_start,
                          long long window_end):
        """Add the rows of ``lines[start:]`` (raw export lines) until a line this path
        declines; return that line's index (``len(lines)`` when all were taken).

        Full export when ``export_time`` is an int (within 64 bits); else incremental,
        with the write time accepted in ``[window_start, window_end)`` and
        ``new_and_old`` for the NEW_AND_OLD_IMAGES view. The caller handles a declined
        line the pure way (blank lines, malformed JSON, anything the row path declines),
        appends its row, and calls again after it.
        """
        cdef Py_ssize_t index, size = len(lines)
        cdef object line, parsed
        cdef PyObject* image
        cdef char op
        cdef long long stamp, full_time = 0
        cdef char uuid_text[UUID_BYTES]
        cdef int overflow = 0
        cdef bint full = export_time is not None
        if full:
            if not PyLong_CheckExact(export_time):
                return start
            full_time = PyLong_AsLongLongAndOverflow(export_time, &overflow)
            if overflow:
                return start
        for index in range(start, size):
            line = <object>PyList_GET_ITEM(lines, index)
            if _blank(line):
                continue  # as the pure loop skips it (``not line.strip()``)
            try:
                parsed = loads(line)
            except Exception:
                return index
            stamp = full_time
            if full:
                image = _full_image(parsed)
                op = b'I'
            else:
                image = _incremental_image(parsed, new_and_old, window_start, window_end,
                                           &op, &stamp)
            if image == NULL:
                return index
            if _hash_item(&self._scratch, <object>image, op, stamp, uuid_text) != OK:
                return index
            self._add(uuid_text, op, stamp, self._scratch.data + self._scratch.prefix,
                      self._scratch.length - self._scratch.prefix)
        return size


# --- whole export lines ----------------------------------------------------------------


cdef PyObject* _get(object mapping, object key):
    """``mapping[key]`` (borrowed) of an exact dict, or NULL (absent, or not an exact dict)."""
    if mapping is None or not PyDict_CheckExact(mapping):
        return NULL
    return PyDict_GetItem(mapping, key)


cdef inline object _object(PyObject* found):
    return None if found == NULL else <object>found


cdef bint _micros(object text, long long start, long long end, long long* stamp) noexcept:
    """``Metadata.WriteTimestampMicros.N``: 1 to 18 ASCII digits in [start, end)."""
    cdef Py_ssize_t size, index
    cdef Py_UCS1* data
    cdef long long value = 0
    if not PyUnicode_CheckExact(text) or not PyUnicode_IS_ASCII(text):
        return False
    size = PyUnicode_GET_LENGTH(text)
    if size < 1 or size > 18:  # 18 digits cannot overflow; longer ones go the pure way
        return False
    data = PyUnicode_1BYTE_DATA(text)
    for index in range(size):
        if not _digit(data[index]):
            return False
        value = value * 10 + (data[index] - 48)
    if value < start or value >= end:
        return False
    stamp[0] = value
    return True


cdef PyObject* _full_image(object line):
    """The ``Item`` of a parsed full-export line (borrowed, an exact dict), or NULL."""
    cdef PyObject* image
    if not PyDict_CheckExact(line):
        return NULL
    image = _get(line, "Item")
    if image == NULL or not PyDict_CheckExact(<object>image):
        return NULL
    return image


cdef PyObject* _incremental_image(object line, bint new_and_old, long long start,
                                  long long end, char* op, long long* stamp):
    """The image (borrowed, an exact dict) of a parsed incremental-export line with its
    ``op`` and write time, or NULL."""
    cdef PyObject* new_image
    cdef PyObject* old_image
    cdef PyObject* keys
    if not PyDict_CheckExact(line):
        return NULL
    if not _micros(_object(_get(_object(_get(_object(_get(line, "Metadata")),
                                                "WriteTimestampMicros")), "N")),
                   start, end, stamp):
        return NULL
    new_image = _get(line, "NewImage")
    old_image = _get(line, "OldImage")
    # Present but not an object (an error), or null (which the pure path reads as absent):
    # both go the pure way.
    if new_image != NULL and not PyDict_CheckExact(<object>new_image):
        return NULL
    if old_image != NULL and not PyDict_CheckExact(<object>old_image):
        return NULL
    if new_image != NULL:
        op[0] = b'I' if old_image == NULL and new_and_old else b'U'
        return new_image
    if old_image != NULL:
        op[0] = b'D'
        return old_image
    keys = _get(line, "Keys")
    if keys == NULL or not PyDict_CheckExact(<object>keys) or PyDict_GET_SIZE(<object>keys) == 0:
        return NULL
    op[0] = b'D'
    return keys


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


# --- the exact key of a lake row ------------------------------------------------------------
#
# A lake row's key is its key attributes' values as text (an S string, an N number's digits
# as written, a B base64 string), encoded as a JSON array of strings: ``["a\u001fb","5"]``.
# :func:`key_column` reads those values straight out of each row's canonical ``data``: it
# walks the top-level object only, skipping nested values without parsing them, and copies
# the value bytes verbatim (never through a double). A row it is not sure about (an escape
# in a key or a matched value, whitespace, a key twice, anything not canonical) is declined
# and left to the pure function in :mod:`dynamo_lake.lake.keys`, which gives the same text.

cdef enum:
    KEY_FOUND = 1
    KEY_INVALID = 2  # present, but not a string or number: the row has no key
    MAX_KEY_NAMES = 2


cdef Py_ssize_t _string_end(const unsigned char* p, Py_ssize_t i, Py_ssize_t end,
                            bint* escaped) noexcept nogil:
    """``p[i]`` opens a JSON string: the index of its closing quote, or -1. ``escaped`` is
    set if the string holds a backslash escape or a raw control character."""
    cdef unsigned char c
    i += 1
    while i < end:
        c = p[i]
        if c == b'"':
            return i
        if c == b'\\':
            escaped[0] = True
            i += 2
            continue
        if c < 0x20:
            escaped[0] = True
        i += 1
    return -1


cdef Py_ssize_t _skip_string(const unsigned char* p, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    """``p[i]`` opens a JSON string that is not read: the index of its closing quote, or -1.
    Jumps from quote to quote with memchr; a quote after an odd run of backslashes is
    escaped and does not close it."""
    cdef const unsigned char* found
    cdef Py_ssize_t quote, back, start = i + 1
    i += 1
    while i < end:
        found = <const unsigned char*>memchr(p + i, b'"', end - i)
        if found == NULL:
            return -1
        quote = found - p
        back = quote - 1
        while back >= i and p[back] == b'\\':
            back -= 1
        if (quote - 1 - back) % 2 == 0:
            return quote if not _has_control(p, start, quote) else -1
        i = quote + 1
    return -1


cdef inline bint _has_control(const unsigned char* p, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    """Whether ``p[start:end]`` holds a raw control character (invalid inside a JSON string:
    such a row is left to the pure path, which refuses it)."""
    cdef Py_ssize_t k
    cdef unsigned char low = 0
    for k in range(start, end):
        low |= p[k] < 0x20
    return low != 0


cdef Py_ssize_t _value_end(const unsigned char* p, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    """The index just after the JSON value starting at ``p[i]``, or -1."""
    cdef Py_ssize_t depth = 0, j
    cdef unsigned char c
    cdef bint escaped = False
    if i >= end:
        return -1
    c = p[i]
    if c == b'"':
        j = _skip_string(p, i, end)
        return j + 1 if j >= 0 else -1
    if c == b'{' or c == b'[':
        while i < end:
            c = p[i]
            if c == b'"':
                j = _skip_string(p, i, end)
                if j < 0:
                    return -1
                i = j + 1
                continue
            if c == b'{' or c == b'[':
                depth += 1
            elif c == b'}' or c == b']':
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return -1
    while i < end and p[i] != b',' and p[i] != b'}' and p[i] != b']':
        i += 1
    return i


cdef Py_ssize_t _number_end(const unsigned char* p, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    """The index just after a JSON number at ``p[i]`` (``-?digits(.digits)?(e[+-]?digits)?``),
    or -1 if there is none there."""
    cdef Py_ssize_t start
    if i < end and p[i] == b'-':
        i += 1
    start = i
    while i < end and _digit(p[i]):
        i += 1
    if i == start or (p[start] == b'0' and i - start > 1):  # JSON allows no leading zero
        return -1
    if i < end and p[i] == b'.':
        i += 1
        start = i
        while i < end and _digit(p[i]):
            i += 1
        if i == start:
            return -1
    if i < end and (p[i] == b'e' or p[i] == b'E'):
        i += 1
        if i < end and (p[i] == b'+' or p[i] == b'-'):
            i += 1
        start = i
        while i < end and _digit(p[i]):
            i += 1
        if i == start:
            return -1
    return i


cdef int _row_key(const unsigned char* p, Py_ssize_t i, Py_ssize_t end, int names,
                  const unsigned char** name_data, Py_ssize_t* name_size,
                  Py_ssize_t* value_start, Py_ssize_t* value_end, int* state) noexcept nogil:
    """Find the key attributes in the top-level object ``p[i:end]``. Returns OK (each
    ``state`` is 0, KEY_FOUND with its value's span, or KEY_INVALID) or DECLINE."""
    cdef Py_ssize_t j, key_start, key_size
    cdef int n, match
    cdef bint escaped
    for n in range(names):
        state[n] = 0
    if i >= end or p[i] != b'{':
        return DECLINE
    i += 1
    if i < end and p[i] == b'}':
        return OK if i + 1 == end else DECLINE
    while True:
        if i >= end or p[i] != b'"':
            return DECLINE
        escaped = False
        j = _string_end(p, i, end, &escaped)
        if j < 0 or escaped:
            return DECLINE  # a key name with an escape may spell one of ours
        key_start = i + 1
        key_size = j - key_start
        i = j + 1
        if i >= end or p[i] != b':':
            return DECLINE
        i += 1
        if i >= end:
            return DECLINE
        match = -1
        for n in range(names):
            if key_size == name_size[n] and memcmp(p + key_start, name_data[n], key_size) == 0:
                match = n
        if match >= 0:
            if state[match] != 0:
                return DECLINE  # a key twice: not canonical
            if p[i] == b'"':
                escaped = False
                j = _string_end(p, i, end, &escaped)
                if j < 0 or escaped:
                    return DECLINE
                value_start[match] = i + 1
                value_end[match] = j
                state[match] = KEY_FOUND
                i = j + 1
            elif p[i] == b'-' or _digit(p[i]):
                j = _number_end(p, i, end)
                if j < 0:
                    return DECLINE
                value_start[match] = i
                value_end[match] = j
                state[match] = KEY_FOUND
                i = j
            elif p[i] == b'{' or p[i] == b'[' or p[i] == b't' or p[i] == b'f' or p[i] == b'n':
                state[match] = KEY_INVALID
                i = _value_end(p, i, end)
                if i < 0:
                    return DECLINE
            else:
                return DECLINE
        else:
            i = _value_end(p, i, end)
            if i < 0:
                return DECLINE
        if i >= end:
            return DECLINE
        if p[i] == b',':
            i += 1
            continue
        if p[i] == b'}':
            return OK if i + 1 == end else DECLINE
        return DECLINE


cdef struct KeyOutput:
    char* data
    Py_ssize_t length
    Py_ssize_t capacity


cdef int _grow(KeyOutput* out, Py_ssize_t extra) noexcept nogil:
    """Room for ``extra`` more bytes; -1 when memory runs out."""
    cdef Py_ssize_t wanted = out.length + extra
    cdef Py_ssize_t capacity = out.capacity * 2
    cdef char* grown
    if wanted <= out.capacity:
        return 0
    if capacity < wanted:
        capacity = wanted
    if capacity < 4096:
        capacity = 4096
    grown = <char*>realloc(out.data, capacity)
    if grown == NULL:
        return -1
    out.data = grown
    out.capacity = capacity
    return 0


cdef int _key_rows(const unsigned char* text, Py_ssize_t text_size, const int* offsets,
                   Py_ssize_t offset, Py_ssize_t count, int name_count,
                   const unsigned char** name_data, Py_ssize_t* name_size,
                   KeyOutput* out, int* out_offsets, unsigned char* validity,
                   char* declined, Py_ssize_t* nulls) noexcept nogil:
    """The scan of every row, without the GIL. Returns 0, -1 (memory), -2 (an offset
    outside the data) or -3 (more than 2 GiB of keys)."""
    cdef Py_ssize_t row, start, stop, size
    cdef Py_ssize_t value_start[MAX_KEY_NAMES]
    cdef Py_ssize_t value_end[MAX_KEY_NAMES]
    cdef int state[MAX_KEY_NAMES]
    cdef int n, result
    cdef bint has_key
    out_offsets[0] = 0
    for row in range(count):
        start = offsets[offset + row]
        stop = offsets[offset + row + 1]
        if start < 0 or stop > text_size or stop < start:
            return -2
        result = _row_key(text, start, stop, name_count, name_data, name_size,
                          value_start, value_end, state)
        has_key = result == OK
        if result == DECLINE:
            declined[row] = 1
        else:
            for n in range(name_count):
                if state[n] != KEY_FOUND:
                    has_key = False
        if has_key:
            size = 2 + name_count * 3
            for n in range(name_count):
                size += value_end[n] - value_start[n]
            if _grow(out, size) != 0:
                return -1
            out.data[out.length] = b'['
            out.length += 1
            for n in range(name_count):
                if n:
                    out.data[out.length] = b','
                    out.length += 1
                out.data[out.length] = b'"'
                out.length += 1
                memcpy(out.data + out.length, text + value_start[n],
                       value_end[n] - value_start[n])
                out.length += value_end[n] - value_start[n]
                out.data[out.length] = b'"'
                out.length += 1
            out.data[out.length] = b']'
            out.length += 1
            validity[row >> 3] |= <unsigned char>(1 << (row & 7))
        else:
            nulls[0] += 1
        if out.length > MAX_COLUMN_BYTES:
            return -3
        out_offsets[row + 1] = <int>out.length
    return 0


def key_column(offsets_buffer, data_buffer, Py_ssize_t offset, Py_ssize_t count, list names):
    """The exact keys of ``count`` rows of a ``data`` string column (Arrow layout: int32
    ``offsets_buffer`` and UTF-8 ``data_buffer``, starting at row ``offset``).

    ``names`` are the key attributes' names as UTF-8 bytes (one or two). Returns
    ``(validity, offsets, values, declined)``: the key column's Arrow buffers (validity is
    None when every row has a key) and the rows left to the pure function. The scan runs
    without the GIL, so batches can be keyed on several threads.
    """
    # pyarrow's buffers export signed bytes ("b"); the scan reads them as unsigned.
    cdef const char[::1] offsets_view = offsets_buffer
    cdef const char[::1] data_view = data_buffer
    cdef const int* offsets
    cdef const unsigned char* text
    cdef const unsigned char* name_data[MAX_KEY_NAMES]
    cdef Py_ssize_t name_size[MAX_KEY_NAMES]
    cdef int name_count = len(names), n, status
    cdef Py_ssize_t row, nulls = 0, text_size
    cdef KeyOutput out
    cdef unsigned char empty = 0
    cdef unsigned char* validity
    cdef int* out_offsets
    cdef char* declined_rows
    if name_count < 1 or name_count > MAX_KEY_NAMES:
        raise ValueError("a key has one or two attributes")
    if count < 0 or offset < 0:
        raise ValueError("negative row count or offset")
    if offsets_view.shape[0] < (offset + count + 1) * <Py_ssize_t>sizeof(int):
        raise ValueError("the offsets buffer is shorter than the rows")
    for n in range(name_count):
        if not PyBytes_CheckExact(names[n]):
            raise TypeError("key names must be bytes")
        name_data[n] = <const unsigned char*>PyBytes_AS_STRING(names[n])
        name_size[n] = PyBytes_GET_SIZE(names[n])
    offsets = <const int*>&offsets_view[0]
    text_size = data_view.shape[0]
    text = <const unsigned char*>&data_view[0] if text_size else &empty
    validity_bytes = PyBytes_FromStringAndSize(NULL, (count + 7) // 8)
    validity = <unsigned char*>PyBytes_AS_STRING(validity_bytes)
    memset(validity, 0, (count + 7) // 8)
    offsets_bytes = PyBytes_FromStringAndSize(NULL, (count + 1) * sizeof(int))
    out_offsets = <int*>PyBytes_AS_STRING(offsets_bytes)
    declined_bytes = PyBytes_FromStringAndSize(NULL, count if count else 1)
    declined_rows = PyBytes_AS_STRING(declined_bytes)
    memset(declined_rows, 0, count if count else 1)
    out.data = NULL
    out.length = 0
    out.capacity = 0
    try:
        with nogil:
            status = _key_rows(text, text_size, offsets, offset, count, name_count, name_data,
                               name_size, &out, out_offsets, validity, declined_rows, &nulls)
        if status == -1:
            raise MemoryError()
        if status == -2:
            raise ValueError("an offset points outside the data buffer")
        if status == -3:
            raise OverflowError("a batch of keys holds at most 2 GiB")
        declined = []
        if count and memchr(declined_rows, 1, count) != NULL:
            declined = [row for row in range(count) if declined_rows[row]]
        return (
            validity_bytes if nulls else None,
            offsets_bytes,
            PyBytes_FromStringAndSize(out.data if out.data != NULL else <char*>&empty, out.length),
            declined,
        )
    finally:
        free(out.data)
