# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: embedsignature=True
"""Compiled decision cache: the C twin of :mod:`attestpolicy.engine.cache`.

Same API, encoding and behaviour as ``PythonDecisionCache``. The canonical encoding is
built in a C buffer (no Python object per leaf); a lookup picks its table slot with a
seeded XXH64 of the buffer and serves the entry only if the stored encoding is equal
byte for byte; ``compute_key`` is one SHA-256 call over the same bytes. Hits build the
fresh Decision directly. Validation of what gets stored is shared with the twin.
"""

import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Mapping

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.datetime cimport (
    PyDateTime_Check,
    datetime_day,
    datetime_hour,
    datetime_microsecond,
    datetime_minute,
    datetime_month,
    datetime_second,
    datetime_tzinfo,
    datetime_year,
    get_utc,
    import_datetime,
    timedelta_days,
    timedelta_microseconds,
    timedelta_seconds,
)
from cpython.dict cimport PyDict_GetItem, PyDict_Next, PyDict_Size
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_FromUnsignedLongLong
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.pythread cimport (
    NOWAIT_LOCK,
    WAIT_LOCK,
    PyThread_acquire_lock,
    PyThread_allocate_lock,
    PyThread_free_lock,
    PyThread_release_lock,
    PyThread_type_lock,
)
from libc.math cimport isfinite
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport qsort
from libc.string cimport memcmp, memcpy

from attestpolicy.decision import Decision

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL
    bint PyUnicode_IS_COMPACT_ASCII(object text)
    void* PyUnicode_DATA(object text)
    Py_ssize_t PyUnicode_GET_LENGTH(object text)
    object PyUnicode_DecodeASCII(const char* data, Py_ssize_t size, const char* errors)
    object PyUnicode_DecodeUTF8(const char* data, Py_ssize_t size, const char* errors)
    int PyObject_GenericSetAttr(object obj, object name, object value) except -1

import_datetime()

ABI_VERSION = 4

cdef enum:
    STACK_BYTES = 8192
    STACK_MEMBERS = 32

cdef bytes KEY_MAGIC = b"attestpolicy.cache.key.v1\x00"
cdef int MAX_DEPTH = 64
cdef int64_t US = 1000000
cdef object _UTC = get_utc()
cdef object _sha256 = hashlib.sha256
cdef object _urandom = os.urandom
cdef object _monotonic_ns = time.monotonic_ns
cdef object _new_object = object.__new__
cdef object _DecisionType = Decision
cdef frozenset _DECISION_FIELDS = frozenset(Decision.model_fields)
cdef object _shared_module = None


cdef object _shared():
    """attestpolicy.engine._cache_entry (what both twins share), imported on first use."""
    global _shared_module
    if _shared_module is None:
        from attestpolicy.engine import _cache_entry
        _shared_module = _cache_entry
    return _shared_module


# --- the canonical encoding, in a C buffer ------------------------------------

cdef struct Buffer:
    unsigned char* data
    Py_ssize_t size
    Py_ssize_t capacity
    bint on_heap

cdef struct Member:
    uint64_t prefix  # the first 8 name bytes, big-endian, zero-padded
    const char* name
    Py_ssize_t length
    PyObject* value


cdef int _grow(Buffer* buf, Py_ssize_t needed) except -1:
    cdef Py_ssize_t capacity = buf.capacity
    cdef unsigned char* grown
    while capacity < needed:
        capacity *= 2
    if buf.on_heap:
        grown = <unsigned char*>PyMem_Realloc(buf.data, capacity)
    else:
        grown = <unsigned char*>PyMem_Malloc(capacity)
        if grown != NULL:
            memcpy(grown, buf.data, buf.size)
    if grown == NULL:
        raise MemoryError()
    buf.data = grown
    buf.capacity = capacity
    buf.on_heap = True
    return 0


cdef inline int _reserve(Buffer* buf, Py_ssize_t extra) except -1:
    if buf.size + extra <= buf.capacity:
        return 0
    return _grow(buf, buf.size + extra)


cdef inline const char* _utf8(object text, Py_ssize_t* length) except NULL:
    # ASCII strings (nearly every claim) are their own UTF-8: no call needed
    if PyUnicode_IS_COMPACT_ASCII(text):
        length[0] = PyUnicode_GET_LENGTH(text)
        return <const char*>PyUnicode_DATA(text)
    return PyUnicode_AsUTF8AndSize(text, length)


cdef inline void _put_len(Buffer* buf, uint64_t length) noexcept:
    # unsigned LEB128; the caller reserved 10 bytes
    cdef unsigned char* out = buf.data + buf.size
    cdef Py_ssize_t n = 0
    while length >= 0x80:
        out[n] = <unsigned char>((length & 0x7F) | 0x80)
        n += 1
        length >>= 7
    out[n] = <unsigned char>length
    buf.size += n + 1


cdef inline void _put_u64(Buffer* buf, uint64_t value) noexcept:
    cdef unsigned char* out = buf.data + buf.size
    cdef int i
    for i in range(8):
        out[i] = <unsigned char>(value >> (56 - 8 * i))
    buf.size += 8


cdef inline int _put_text(Buffer* buf, const char* text, Py_ssize_t length) except -1:
    _reserve(buf, 11 + length)
    buf.data[buf.size] = 0x73  # "s"
    buf.size += 1
    _put_len(buf, <uint64_t>length)
    memcpy(buf.data + buf.size, text, length)
    buf.size += length
    return 0


cdef int _put_str(Buffer* buf, object text) except -1:
    cdef Py_ssize_t length
    cdef const char* data = _utf8(text, &length)
    return _put_text(buf, data, length)


cdef inline uint64_t _prefix(const char* name, Py_ssize_t length) noexcept nogil:
    cdef uint64_t prefix = 0
    cdef Py_ssize_t i
    for i in range(8):
        prefix <<= 8
        if i < length:
            prefix |= (<const unsigned char*>name)[i]
    return prefix


cdef inline int _member_cmp(const Member* a, const Member* b) noexcept nogil:
    cdef Py_ssize_t shortest
    cdef int order
    if a.prefix != b.prefix:
        return -1 if a.prefix < b.prefix else 1
    shortest = a.length if a.length < b.length else b.length
    order = memcmp(a.name, b.name, shortest)
    if order != 0:
        return order
    return (a.length > b.length) - (a.length < b.length)


cdef int _qsort_member_cmp(const void* a, const void* b) noexcept nogil:
    return _member_cmp((<const Member**>a)[0], (<const Member**>b)[0])


cdef void _sort_members(Member** members, Py_ssize_t count) noexcept:
    # insertion sort of pointers (claim objects are small), qsort for big ones
    cdef Py_ssize_t i, j
    cdef Member* current
    if count > 64:
        qsort(members, count, sizeof(Member*), _qsort_member_cmp)
        return
    for i in range(1, count):
        current = members[i]
        j = i - 1
        while j >= 0 and _member_cmp(members[j], current) > 0:
            members[j + 1] = members[j]
            j -= 1
        members[j + 1] = current


cdef int _put_object(Buffer* buf, dict members, int depth, bint top) except -1:
    # Borrowed references are safe: nothing here runs Python code or releases the GIL,
    # so the dict cannot change while it is encoded.
    cdef Member stack_items[STACK_MEMBERS]
    cdef Member* stack_order[STACK_MEMBERS]
    cdef Member* items = stack_items
    cdef Member** order = stack_order
    cdef Py_ssize_t size = PyDict_Size(members)
    cdef Py_ssize_t position = 0, count = 0, i
    cdef PyObject* key
    cdef PyObject* value
    cdef const char* name
    cdef Py_ssize_t length
    if size > STACK_MEMBERS:
        items = <Member*>PyMem_Malloc(size * (sizeof(Member) + sizeof(Member*)))
        if items == NULL:
            raise MemoryError()
        order = <Member**>(items + size)
    try:
        while PyDict_Next(members, &position, &key, &value):
            if type(<object>key) is not str:
                raise TypeError(
                    f"claims object keys must be str, got {type(<object>key).__name__}"
                )
            name = _utf8(<object>key, &length)
            if top and length == 3 and memcmp(name, b"now", 3) == 0:
                continue
            items[count].prefix = _prefix(name, length)
            items[count].name = name
            items[count].length = length
            items[count].value = value
            order[count] = &items[count]
            count += 1
        _sort_members(order, count)
        _reserve(buf, 11)
        buf.data[buf.size] = 0x64  # "d"
        buf.size += 1
        _put_len(buf, <uint64_t>count)
        for i in range(count):
            _put_text(buf, order[i].name, order[i].length)
            _put_value(buf, <object>order[i].value, depth + 1)
    finally:
        if items != stack_items:
            PyMem_Free(items)
    return 0


cdef int _put_big_int(Buffer* buf, object number) except -1:
    cdef Py_ssize_t size = (number.bit_length() + 8) // 8
    cdef bytes raw = number.to_bytes(size, "big", signed=True)
    _reserve(buf, 11 + size)
    buf.data[buf.size] = 0x49  # "I"
    buf.size += 1
    _put_len(buf, <uint64_t>size)
    memcpy(buf.data + buf.size, PyBytes_AS_STRING(raw), size)
    buf.size += size
    return 0


cdef int _put_value(Buffer* buf, object value, int depth) except -1:
    cdef Py_ssize_t i, count
    cdef int overflow = 0
    cdef long long number
    cdef double real
    cdef uint64_t bits
    cdef type kind = type(value)
    if kind is str:
        return _put_str(buf, value)
    if kind is dict or kind is list:
        if depth >= MAX_DEPTH:
            raise ValueError(f"claims nest deeper than {MAX_DEPTH} levels")
        if kind is dict:
            return _put_object(buf, <dict>value, depth, False)
        count = PyList_GET_SIZE(value)
        _reserve(buf, 11)
        buf.data[buf.size] = 0x6C  # "l"
        buf.size += 1
        _put_len(buf, <uint64_t>count)
        for i in range(count):
            _put_value(buf, <object>PyList_GET_ITEM(value, i), depth + 1)
        return 0
    _reserve(buf, 9)
    if kind is bool:
        buf.data[buf.size] = 0x54 if value is True else 0x46  # "T" / "F"
        buf.size += 1
    elif kind is int:
        number = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow:
            return _put_big_int(buf, value)
        buf.data[buf.size] = 0x69  # "i"
        buf.size += 1
        _put_u64(buf, <uint64_t>number)
    elif kind is float:
        real = PyFloat_AS_DOUBLE(value)
        if not isfinite(real):
            raise ValueError(f"claims must not contain {value!r}: not a JSON number")
        memcpy(&bits, &real, 8)
        buf.data[buf.size] = 0x66  # "f"
        buf.size += 1
        _put_u64(buf, bits)
    elif value is None:
        buf.data[buf.size] = 0x4E  # "N"
        buf.size += 1
    else:
        raise TypeError(f"claims must be JSON-like, got {kind.__name__}")
    return 0


cdef inline void _buffer_init(Buffer* buf, unsigned char* stack_bytes) noexcept:
    buf.data = stack_bytes
    buf.size = 0
    buf.capacity = STACK_BYTES
    buf.on_heap = False


cdef int _encode_into(Buffer* buf, object claims, object revision) except -1:
    if type(claims) is not dict:
        if not isinstance(claims, Mapping):
            raise TypeError(f"claims must be a mapping, got {type(claims).__name__}")
        claims = dict(claims)
    if type(revision) is not str:
        raise TypeError(f"revision must be str, got {type(revision).__name__}")
    _reserve(buf, PyBytes_GET_SIZE(KEY_MAGIC))
    memcpy(buf.data + buf.size, PyBytes_AS_STRING(KEY_MAGIC), PyBytes_GET_SIZE(KEY_MAGIC))
    buf.size += PyBytes_GET_SIZE(KEY_MAGIC)
    _put_str(buf, revision)
    return _put_object(buf, <dict>claims, 0, True)


cdef bytes _encode(object claims, object revision):
    cdef unsigned char stack_bytes[STACK_BYTES]
    cdef Buffer buf
    _buffer_init(&buf, stack_bytes)
    try:
        _encode_into(&buf, claims, revision)
        return PyBytes_FromStringAndSize(<char*>buf.data, buf.size)
    finally:
        if buf.on_heap:
            PyMem_Free(buf.data)


def canonical_encoding(claims, revision):
    """The canonical bytes the key hashes (compiled)."""
    return _encode(claims, revision)


def compute_key(claims, revision):
    """The 32-byte cache key of ``claims`` under ``revision``: SHA-256 of the encoding."""
    return _sha256(_encode(claims, revision)).digest()


# --- the canonical encoding, read back ------------------------------------------


cdef struct Reader:
    const unsigned char* data
    Py_ssize_t size
    Py_ssize_t position


cdef inline int _need(Reader* reader, Py_ssize_t count) except -1:
    if count < 0 or reader.position + count > reader.size:
        raise ValueError("not a canonical encoding: truncated")
    return 0


cdef uint64_t _read_len(Reader* reader) except? 0xFFFFFFFFFFFFFFFF:
    cdef uint64_t length = 0
    cdef int shift = 0
    cdef unsigned char byte
    while True:
        _need(reader, 1)
        byte = reader.data[reader.position]
        reader.position += 1
        length |= (<uint64_t>(byte & 0x7F)) << shift
        if byte < 0x80:
            return length
        shift += 7
        if shift > 63:
            raise ValueError("not a canonical encoding: length overflow")


cdef str _read_text(Reader* reader):
    cdef Py_ssize_t length = <Py_ssize_t>_read_len(reader)
    _need(reader, length)
    text = PyUnicode_DecodeUTF8(<const char*>(reader.data + reader.position), length, NULL)
    reader.position += length
    return text


cdef object _read_value(Reader* reader, int depth):
    cdef unsigned char tag
    cdef Py_ssize_t count, i, length
    cdef uint64_t bits = 0
    cdef int j
    _need(reader, 1)
    tag = reader.data[reader.position]
    reader.position += 1
    if tag == 0x73:  # "s"
        return _read_text(reader)
    if tag == 0x64 or tag == 0x6C:  # "d" / "l"
        if depth >= MAX_DEPTH:
            raise ValueError(f"claims nest deeper than {MAX_DEPTH} levels")
        count = <Py_ssize_t>_read_len(reader)
        if tag == 0x6C:
            items = []
            for i in range(count):
                items.append(_read_value(reader, depth + 1))
            return items
        members = {}
        for i in range(count):
            _need(reader, 1)
            if reader.data[reader.position] != 0x73:
                raise ValueError("not a canonical encoding: object key is not a string")
            reader.position += 1
            name = _read_text(reader)
            members[name] = _read_value(reader, depth + 1)
        return members
    if tag == 0x54:  # "T"
        return True
    if tag == 0x46:  # "F"
        return False
    if tag == 0x4E:  # "N"
        return None
    if tag == 0x69 or tag == 0x66:  # "i" / "f": 8 bytes, big-endian
        _need(reader, 8)
        for j in range(8):
            bits = (bits << 8) | reader.data[reader.position + j]
        reader.position += 8
        if tag == 0x69:
            return <long long>bits
        return (<double*>&bits)[0]
    if tag == 0x49:  # "I": a big integer
        length = <Py_ssize_t>_read_len(reader)
        _need(reader, length)
        raw = PyBytes_FromStringAndSize(<const char*>(reader.data + reader.position), length)
        reader.position += length
        return int.from_bytes(raw, "big", signed=True)
    raise ValueError(f"not a canonical encoding: unknown tag {tag:#x}")


def decode_encoding(encoding):
    """``(revision, claims)`` back from a canonical encoding (compiled; see the twin)."""
    if type(encoding) is not bytes or not (<bytes>encoding).startswith(KEY_MAGIC):
        raise ValueError("not a canonical encoding: bad magic")
    cdef Reader reader
    reader.data = <const unsigned char*>PyBytes_AS_STRING(encoding)
    reader.size = PyBytes_GET_SIZE(encoding)
    reader.position = len(KEY_MAGIC)
    try:
        revision = _read_value(&reader, 0)
        claims = _read_value(&reader, 0)
    except UnicodeDecodeError as exc:
        raise ValueError(f"not a canonical encoding: {exc}") from None
    if type(revision) is not str or type(claims) is not dict or reader.position != reader.size:
        raise ValueError("not a canonical encoding of (revision, claims)")
    return revision, claims


# --- the table hash: XXH64 with a per-cache random seed -----------------------
# Only picks the table slot: an entry is served only when its stored encoding equals
# the request's byte for byte, so a collision can cost a miss, never a wrong answer.

cdef extern from *:
    """
    #define APC_XXH_P1 11400714785074694791ULL
    #define APC_XXH_P2 14029467366897019727ULL
    #define APC_XXH_P3 1609587929392839161ULL
    #define APC_XXH_P4 9650029242287828579ULL
    #define APC_XXH_P5 2870177450012600261ULL
    """
    const uint64_t _P1 "APC_XXH_P1"
    const uint64_t _P2 "APC_XXH_P2"
    const uint64_t _P3 "APC_XXH_P3"
    const uint64_t _P4 "APC_XXH_P4"
    const uint64_t _P5 "APC_XXH_P5"


cdef inline uint64_t _rotl(uint64_t x, int r) noexcept nogil:
    return (x << r) | (x >> (64 - r))


cdef inline uint64_t _read64(const unsigned char* p) noexcept nogil:
    cdef uint64_t value
    memcpy(&value, p, 8)
    return value


cdef inline uint64_t _round(uint64_t acc, uint64_t lane) noexcept nogil:
    acc += lane * _P2
    return _rotl(acc, 31) * _P1


cdef inline uint64_t _merge(uint64_t acc, uint64_t value) noexcept nogil:
    acc ^= _round(0, value)
    return acc * _P1 + _P4


cdef uint64_t _slot_mask = 0xFFFFFFFFFFFFFFFFULL


def _set_slot_mask(mask):
    """Testing aid: keep only these bits of slot hashes, to force collisions."""
    global _slot_mask
    _slot_mask = mask


cdef object _slot(const unsigned char* data, Py_ssize_t size, uint64_t seed):
    return PyLong_FromUnsignedLongLong(_hash64(data, size, seed) & _slot_mask)


cdef uint64_t _hash64(const unsigned char* p, Py_ssize_t size, uint64_t seed) noexcept nogil:
    cdef const unsigned char* end = p + size
    cdef uint64_t h, v1, v2, v3, v4, lane
    cdef uint32_t word
    if size >= 32:
        v1 = seed + _P1 + _P2
        v2 = seed + _P2
        v3 = seed
        v4 = seed - _P1
        while p + 32 <= end:
            v1 = _round(v1, _read64(p))
            v2 = _round(v2, _read64(p + 8))
            v3 = _round(v3, _read64(p + 16))
            v4 = _round(v4, _read64(p + 24))
            p += 32
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
        h = _merge(_merge(_merge(_merge(h, v1), v2), v3), v4)
    else:
        h = seed + _P5
    h += <uint64_t>size
    while p + 8 <= end:
        lane = _round(0, _read64(p))
        h = _rotl(h ^ lane, 27) * _P1 + _P4
        p += 8
    if p + 4 <= end:
        memcpy(&word, p, 4)
        h = _rotl(h ^ (<uint64_t>word * _P1), 23) * _P2 + _P3
        p += 4
    while p < end:
        h = _rotl(h ^ (p[0] * _P5), 11) * _P1
        p += 1
    h ^= h >> 33
    h *= _P2
    h ^= h >> 29
    h *= _P3
    h ^= h >> 32
    return h


# --- time and identifiers -----------------------------------------------------

cdef inline int64_t _floor_div(int64_t a, int64_t b) noexcept:
    cdef int64_t q = a / b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef int64_t _days_from_civil(int64_t year, int64_t month, int64_t day) noexcept:
    # Howard Hinnant's algorithm; datetime years are >= 1 so everything stays >= 0
    cdef int64_t era, yoe, doy, doe
    if month <= 2:
        year -= 1
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef int64_t _epoch_us(object moment) except? -1:
    cdef int64_t offset_us = 0
    cdef int64_t days
    if not PyDateTime_Check(moment):
        raise TypeError(f"expected an aware datetime, got {type(moment).__name__}")
    zone = datetime_tzinfo(moment)
    if zone is not _UTC:
        offset = None if zone is None else moment.utcoffset()
        if offset is None:
            raise ValueError("datetime must be timezone-aware")
        offset_us = (
            (<int64_t>timedelta_days(offset) * 86400 + timedelta_seconds(offset)) * US
            + timedelta_microseconds(offset)
        )
    days = _days_from_civil(datetime_year(moment), datetime_month(moment), datetime_day(moment))
    return (
        (
            days * 86400
            + datetime_hour(moment) * 3600
            + datetime_minute(moment) * 60
            + datetime_second(moment)
        ) * US
        + datetime_microsecond(moment)
        - offset_us
    )


cdef bytes _random_pool = b""
cdef Py_ssize_t _random_position = 0
cdef const char* _HEX_DIGITS = b"0123456789abcdef"


def _discard_random_pool():
    """Forget buffered randomness in a forked child, so its ids differ from the parent's."""
    global _random_pool, _random_position
    _random_pool = b""
    _random_position = 0


os.register_at_fork(after_in_child=_discard_random_pool)


cdef str _new_uuid4():
    """A random (version 4) UUID string from buffered os.urandom output."""
    global _random_pool, _random_position
    cdef unsigned char raw[16]
    cdef char text[36]
    cdef int i, j = 0
    if _random_position + 16 > PyBytes_GET_SIZE(_random_pool):
        fresh = _urandom(4096)  # may release the GIL: take a slice only after it returns
        _random_pool = fresh
        _random_position = 0
    memcpy(raw, PyBytes_AS_STRING(_random_pool) + _random_position, 16)
    _random_position += 16
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    for i in range(16):
        if i == 4 or i == 6 or i == 8 or i == 10:
            text[j] = 45  # "-"
            j += 1
        text[j] = _HEX_DIGITS[raw[i] >> 4]
        text[j + 1] = _HEX_DIGITS[raw[i] & 0x0F]
        j += 2
    return PyUnicode_DecodeASCII(text, 36, NULL)


cdef object _fresh_decision(_Entry entry, int64_t ttl_seconds, object ttl_bound_by, object now):
    """The Decision an entry serves at ``now``, built without re-running validation."""
    decision = _new_object(_DecisionType)
    PyObject_GenericSetAttr(
        decision,
        "__dict__",
        {
            "allow": entry.allow,
            "ttl_seconds": ttl_seconds,
            "reasons": entry.reasons,
            "ttl_bound_by": ttl_bound_by,
            "valid_until": entry.valid_until,
            "decision_id": _new_uuid4(),
            "evaluated_at": now,
            "policy_revision": entry.policy_revision,
            "ttl_terms": entry.ttl_terms,
            "revocable": entry.mentions,
        },
    )
    PyObject_GenericSetAttr(decision, "__pydantic_fields_set__", set(_DECISION_FIELDS))
    PyObject_GenericSetAttr(decision, "__pydantic_extra__", None)
    PyObject_GenericSetAttr(decision, "__pydantic_private__", None)
    return decision


# --- the cache ----------------------------------------------------------------

cdef class CacheTicket:
    """What ``lookup`` hands back for a later ``store`` (see the twin's CacheTicket)."""

    cdef readonly bytes encoding
    cdef readonly object claims
    cdef readonly long long epoch

    @property
    def key(self):
        """The 32-byte key (SHA-256 of ``encoding``), as ``compute_key`` gives it."""
        return _sha256(self.encoding).digest()


cdef class _Entry:
    cdef object slot  # the table hash of encoding, as a Python int
    cdef bytes encoding
    cdef bint allow
    cdef object reasons
    cdef object ttl_terms
    cdef int64_t fixed_seconds  # the shortest fixed TTL term: seconds, rank, name
    cdef int64_t fixed_rank
    cdef object fixed_name
    cdef tuple shrinking  # (until_us, rank, name) of each term that shrinks with time
    cdef object valid_until
    cdef bint has_valid_until
    cdef int64_t valid_until_us
    cdef object policy_revision
    cdef int64_t stored_us
    cdef int64_t created_ns  # time.monotonic_ns() when stored
    cdef int64_t deny_until_us
    cdef tuple mentions
    cdef Py_ssize_t size


cdef inline void _acquire(PyThread_type_lock lock) noexcept:
    if not PyThread_acquire_lock(lock, NOWAIT_LOCK):
        with nogil:
            PyThread_acquire_lock(lock, WAIT_LOCK)


cdef class DecisionCache:
    """Bounded LRU cache of decisions keyed by claims + revision (compiled).

    Same constructor, methods and behaviour as ``PythonDecisionCache``. Thread-safe.
    """

    cdef PyThread_type_lock _lock
    cdef object _entries
    cdef dict _index
    cdef object _move_to_end
    cdef uint64_t _seed
    cdef Py_ssize_t _max_entries
    cdef Py_ssize_t _max_bytes
    cdef Py_ssize_t _bytes
    cdef int64_t _negative_ttl_us
    cdef int64_t _max_age_ns
    cdef long long _hits, _misses, _evictions, _expirations, _revocations, _epoch

    implementation = "cython"

    def __cinit__(self, *args, **kwargs):
        self._lock = PyThread_allocate_lock()
        if self._lock == NULL:
            raise MemoryError()

    def __dealloc__(self):
        if self._lock != NULL:
            PyThread_free_lock(self._lock)

    def __init__(
        self,
        max_entries=10_000,
        negative_ttl_seconds=0.0,
        max_bytes=64 * 1024 * 1024,
        max_age_seconds=None,
    ):
        (
            self._max_entries, self._negative_ttl_us, self._max_bytes, self._max_age_ns
        ) = _shared().check_limits(max_entries, negative_ttl_seconds, max_bytes, max_age_seconds)
        self._entries = OrderedDict()
        self._move_to_end = self._entries.move_to_end
        self._index = {}
        self._seed = int.from_bytes(_urandom(8), "little")

    def lookup(self, claims, revision, now):
        """Return a ticket for ``store`` and the cached decision for ``now``, or None."""
        cdef int64_t now_us = _epoch_us(now)
        cdef unsigned char stack_bytes[STACK_BYTES]
        cdef Buffer buf
        cdef PyObject* found
        cdef _Entry entry
        cdef CacheTicket ticket = CacheTicket.__new__(CacheTicket)
        decision = None
        _buffer_init(&buf, stack_bytes)
        try:
            _encode_into(&buf, claims, revision)
            slot = _slot(buf.data, buf.size, self._seed)
            _acquire(self._lock)
            try:
                found = PyDict_GetItem(self._entries, slot)
                if found != NULL:
                    entry = <_Entry>found
                    if (
                        PyBytes_GET_SIZE(entry.encoding) == buf.size
                        and memcmp(PyBytes_AS_STRING(entry.encoding), buf.data, buf.size) == 0
                    ):
                        ticket.encoding = entry.encoding
                        decision = self._serve(entry, now, now_us)
                if decision is None:
                    self._misses += 1
                ticket.epoch = self._epoch
            finally:
                PyThread_release_lock(self._lock)
            if ticket.encoding is None:
                ticket.encoding = PyBytes_FromStringAndSize(<char*>buf.data, buf.size)
        finally:
            if buf.on_heap:
                PyMem_Free(buf.data)
        ticket.claims = claims
        return ticket, decision

    def get(self, claims, revision, now):
        """The cached decision for these claims at ``now``, or None."""
        return self.lookup(claims, revision, now)[1]

    def store(self, ticket, decision, *, now):
        """Cache ``decision`` (made at ``now``) under ``ticket``; False if not cached."""
        if not isinstance(ticket, CacheTicket):
            raise TypeError(f"expected a CacheTicket, got {type(ticket).__name__}")
        cdef CacheTicket checked = <CacheTicket>ticket
        cdef bytes encoding = checked.encoding
        fields = _shared().prepare_entry(
            PyBytes_GET_SIZE(encoding), decision, _epoch_us(now), self._negative_ttl_us
        )
        if fields is None:
            return False
        cdef _Entry entry = _Entry.__new__(_Entry)
        entry.encoding = encoding
        entry.slot = _slot(
            <const unsigned char*>PyBytes_AS_STRING(encoding), PyBytes_GET_SIZE(encoding), self._seed
        )
        (
            entry.allow,
            entry.reasons,
            entry.ttl_terms,
            (entry.fixed_seconds, entry.fixed_rank, entry.fixed_name),
            entry.shrinking,
            entry.valid_until,
            valid_until_us,
            entry.policy_revision,
            entry.stored_us,
            entry.created_ns,
            entry.deny_until_us,
            entry.mentions,
            entry.size,
        ) = fields
        entry.has_valid_until = valid_until_us is not None
        entry.valid_until_us = valid_until_us if entry.has_valid_until else 0
        _acquire(self._lock)
        try:
            if checked.epoch != self._epoch or entry.size > self._max_bytes:
                return False
            self._insert(entry)
        finally:
            PyThread_release_lock(self._lock)
        return True

    def put(self, claims, revision, decision, *, now):
        """Compute the key and ``store`` (prefer lookup/store when evaluations race revokes)."""
        cdef CacheTicket ticket = CacheTicket.__new__(CacheTicket)
        ticket.encoding = _encode(claims, revision)
        ticket.claims = claims
        _acquire(self._lock)
        ticket.epoch = self._epoch
        PyThread_release_lock(self._lock)
        self.store(ticket, decision, now=now)

    def revoke(self, pairs):
        """Drop every entry whose decision lists any ``(member, value)`` pair in its
        ``revocable``; return how many."""
        targets = _shared().revocation_targets(pairs)
        cdef set doomed = set()
        _acquire(self._lock)
        try:
            self._epoch += 1
            for target in targets:
                keys = self._index.get(target)
                if keys is not None:
                    doomed.update(keys)
            for slot in doomed:
                self._remove(<_Entry>self._entries[slot])
            self._revocations += len(doomed)
        finally:
            PyThread_release_lock(self._lock)
        return len(doomed)

    def clear(self):
        """Drop every entry (counters are kept)."""
        _acquire(self._lock)
        try:
            self._epoch += 1
            self._entries.clear()
            self._index.clear()
            self._bytes = 0
        finally:
            PyThread_release_lock(self._lock)

    def stats(self):
        """Entry count, approximate memory and counters."""
        stats_type = _shared().CacheStats
        _acquire(self._lock)
        try:
            return stats_type(
                entries=len(self._entries),
                approx_bytes=self._bytes,
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                expirations=self._expirations,
                revocations=self._revocations,
                implementation="cython",
            )
        finally:
            PyThread_release_lock(self._lock)

    cdef object _serve(self, _Entry entry, object now, int64_t now_us):
        cdef int64_t ttl, rank, seconds, term_rank
        cdef bint expired
        bound_by = None
        if now_us < entry.stored_us:
            return None  # the clock went back: only a fresh evaluation is safe
        if self._max_age_ns > 0 and <int64_t>_monotonic_ns() - entry.created_ns >= self._max_age_ns:
            ttl = 0
            expired = True
        elif entry.allow:
            if entry.has_valid_until and now_us >= entry.valid_until_us:
                ttl = 0
            else:
                # The shortest term, the first on a tie (as the twin's ttl_at).
                ttl, rank, bound_by = entry.fixed_seconds, entry.fixed_rank, entry.fixed_name
                for term in entry.shrinking:
                    seconds = _floor_div(<int64_t>term[0] - now_us, US)
                    term_rank = term[1]
                    if seconds < ttl or (seconds == ttl and term_rank < rank):
                        ttl, rank, bound_by = seconds, term_rank, term[2]
            expired = ttl <= 0
        else:
            ttl = 0
            expired = now_us >= entry.deny_until_us
        if expired:
            self._remove(entry)
            self._expirations += 1
            return None
        self._move_to_end(entry.slot)
        self._hits += 1
        return _fresh_decision(entry, ttl, bound_by, now)

    cdef int _insert(self, _Entry entry) except -1:
        cdef PyObject* found = PyDict_GetItem(self._entries, entry.slot)
        cdef _Entry old
        if found != NULL:
            old = <_Entry>found  # a strong reference: _remove drops the dict's
            self._remove(old)
        self._entries[entry.slot] = entry
        for mention in entry.mentions:
            keys = self._index.get(mention)
            if keys is None:
                keys = self._index[mention] = set()
            keys.add(entry.slot)
        self._bytes += entry.size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            self._remove(<_Entry>next(iter(self._entries.values())))
            self._evictions += 1
        return 0

    cdef int _remove(self, _Entry entry) except -1:
        del self._entries[entry.slot]
        for mention in entry.mentions:
            keys = <set>self._index[mention]
            keys.discard(entry.slot)
            if not keys:
                del self._index[mention]
        self._bytes -= entry.size
        return 0
