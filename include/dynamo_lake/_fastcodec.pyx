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

from cpython.ref cimport PyObject
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy

import binascii
import hashlib

cdef extern from "Python.h":
    ctypedef unsigned char Py_UCS1
    ctypedef unsigned short Py_UCS2
    bint PyUnicode_CheckExact(object)
    bint PyDict_CheckExact(object)
    bint PyList_CheckExact(object)
    bint PyLong_CheckExact(object)
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
_number_key = None


def set_number_key(key):
    """The pure codec's ``NS`` sort key (so both paths order numbers by one definition)."""
    global _number_key
    _number_key = key


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
    cdef Py_ssize_t index
    cdef unsigned int code
    cdef char escape
    cdef unsigned char* at
    # At most 6 bytes per character (\u00XX), plus the quotes.
    _reserve(out, size * 6 + 2)
    at = <unsigned char*>out.data + out.length
    at[0] = b'"'
    at += 1
    for index in range(size):
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


cdef int _write_object(Buffer* out, object typed_values, int depth) except -1:
    """An item or an ``M``: keys sorted by code point (str order), values typed."""
    cdef Py_ssize_t size = PyDict_GET_SIZE(typed_values)
    cdef Py_ssize_t index
    cdef PyObject* typed
    cdef object names, name
    if depth > _MAX_DEPTH:
        return DECLINE
    if size == 0:
        return _put_bytes(out, b"{}", 2)
    names = PyDict_Keys(typed_values)
    if size > 1:
        for index in range(size):
            if not PyUnicode_CheckExact(<object>PyList_GET_ITEM(names, index)):
                return DECLINE  # only str keys compare by code point
        PyList_Sort(names)
    _put(out, b'{')
    for index in range(size):
        name = <object>PyList_GET_ITEM(names, index)
        if not PyUnicode_CheckExact(name):
            return DECLINE
        if index:
            _put(out, b',')
        if _write_string(out, name):
            return DECLINE
        _put(out, b':')
        typed = PyDict_GetItem(typed_values, name)
        if typed == NULL or _write_value(out, <object>typed, depth):
            return DECLINE
    _put(out, b'}')
    return OK


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


cdef int _write_set(Buffer* out, object members, int code) except -1:
    """``SS`` by code point, ``NS`` by the pure codec's numeric key, ``BS`` by the bytes."""
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
    if code == 6:
        ordered = PyList_GetSlice(members, 0, size)
        PyList_Sort(ordered)
    elif code == 7:
        if _number_key is None:
            return DECLINE
        ordered = sorted(members, key=_number_key)  # may raise: the caller declines
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
            _write_verbatim(out, member, code == 8)
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
    if not PyUnicode_CheckExact(op) or op not in ("I", "U", "D"):
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
    return _tuple_new(row_type, (uuid, op, time_stamp, data))
