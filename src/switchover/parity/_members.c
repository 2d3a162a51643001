/* The top-level members of two JSON objects whose texts differ, read without building them.
 *
 * What msgspec's ``Decoder(dict[str, Raw])`` gives the proxy's cheap diff (rawjson.py), at a few
 * instructions a byte instead of ~11, and only for the members that differ: the second document is
 * read against the first, a member whose text is the same bytes as the first's at the same place
 * is passed over with one memcmp. Any doubt (not two objects, not valid JSON, a name with escapes
 * or beyond ASCII, two members of one name, more than MAX_MEMBERS members, nesting beyond MAX_DEPTH, a lone
 * surrogate) returns None: the caller then reads both with msgspec as before, so a result from
 * here is always what msgspec would have found (tests/unit/parity/test_parity_members.py checks
 * both on generated and on mangled documents).
 *
 * Every read is bounds-checked against the end of the buffer; nothing is written but the result.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <string.h>

#define MAX_DEPTH 32     /* containers inside a member: deeper documents go to msgspec */
#define MAX_MEMBERS 256  /* members of the top-level object */
#define TABLE 512        /* hash table slots for the names (power of two, > 2 * MAX_MEMBERS) */
#define MEMBERS_VERSION 1

typedef const unsigned char *ptr;

typedef struct {
    Py_ssize_t key, key_len;      /* the name's characters, without its quotes */
    Py_ssize_t value, value_len;  /* the value's text, without whitespace around it */
    int same;                     /* (second document) the same name and text as the first's at this index */
} member;

static ptr skip_ws_rest(ptr p, ptr end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/* Past whitespace; its common cases (none, one space) inline. */
static inline ptr skip_ws(ptr p, ptr end)
{
    if (p < end && *p > ' ')
        return p;
    if (end - p >= 2 && p[0] == ' ' && p[1] > ' ')
        return p + 1;
    return skip_ws_rest(p, end);
}

static inline int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Four hex digits at p (the caller checked that they are within the buffer), or -1. */
static inline long hex4(ptr p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* p: a byte above 0x7f in a string. Returns just after its UTF-8 sequence, or NULL when it is not
 * one that Python's strict decoder takes (overlong forms, surrogates, beyond U+10FFFF). */
static ptr skip_utf8(ptr p, ptr end)
{
    unsigned char c = p[0];
    int more;
    unsigned char low = 0x80, high = 0xBF;  /* the range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        more = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        more = 2;
        if (c == 0xE0)
            low = 0xA0;
        else if (c == 0xED)
            high = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        more = 3;
        if (c == 0xF0)
            low = 0x90;
        else if (c == 0xF4)
            high = 0x8F;
    } else
        return NULL;
    if (end - p <= more || p[1] < low || p[1] > high)
        return NULL;
    for (int i = 2; i <= more; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return NULL;
    return p + 1 + more;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
/* The high bit of each of the eight bytes of w that is a quote, a backslash, below 0x20 or above
 * 0x7f: exact up to the first such byte (bytes after it may be marked wrongly, never before). */
static inline uint64_t specials(uint64_t w)
{
    uint64_t q = w ^ (ONES * '"'), b = w ^ (ONES * '\\');
    return (((q - ONES) & ~q) | ((b - ONES) & ~b) | ((w - ONES * 0x20) & ~w) | w) & HIGHS;
}

#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define WORDS 1  /* the first byte in memory is the lowest: the first marked byte is the lowest bit */
#else
#define WORDS 0
#endif

/* p: just after an opening quote. Returns just after the closing quote, or NULL when the text is
 * not a valid string (UTF-8 included). *escaped is set when the string holds an escape. Eight bytes
 * at a time up to the next byte that needs a look. */
static ptr skip_string_rest(ptr p, ptr end, int *escaped)
{
    while (p < end) {
#if WORDS
        if (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            uint64_t m = specials(w);
            if (m == 0) {
                p += 8;
                continue;
            }
            p += __builtin_ctzll(m) >> 3;
        }
#endif
        unsigned char c = *p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c >= 0x80) {
            p = skip_utf8(p, end);
            if (p == NULL)
                return NULL;
            continue;
        }
        if (c != '\\') {
            p++;
            continue;
        }
        *escaped = 1;
        if (end - p < 2)
            return NULL;
        c = p[1];
        if (c != 'u') {
            if (c != '"' && c != '\\' && c != '/' && c != 'b' && c != 'f' && c != 'n' && c != 'r' && c != 't')
                return NULL;
            p += 2;
            continue;
        }
        if (end - p < 6)
            return NULL;
        long v = hex4(p + 2);
        if (v < 0 || (v >= 0xDC00 && v <= 0xDFFF))
            return NULL;  /* not hex, or a low surrogate alone */
        p += 6;
        if (v >= 0xD800 && v <= 0xDBFF) {  /* a high surrogate: its low half must follow */
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
                return NULL;
            long low = hex4(p + 2);
            if (low < 0xDC00 || low > 0xDFFF)
                return NULL;
            p += 6;
        }
    }
    return NULL;
}

/* ``skip_string_rest``, its common case inline: a string without escapes nor bytes beyond ASCII. */
static inline ptr skip_string(ptr p, ptr end, int *escaped)
{
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), control = _mm_set1_epi8(0x1f);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                   _mm_cmpeq_epi8(_mm_min_epu8(v, control), v));  /* below 0x20 */
        int m = _mm_movemask_epi8(hit) | _mm_movemask_epi8(v);  /* and the high bit: beyond ASCII */
        if (m != 0) {
            p += __builtin_ctz((unsigned)m);
            return *p == '"' ? p + 1 : skip_string_rest(p, end, escaped);
        }
        p += 16;
    }
#endif
#if WORDS
    while (end - p >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        uint64_t m = specials(w);
        if (m != 0) {
            p += __builtin_ctzll(m) >> 3;
            return *p == '"' ? p + 1 : skip_string_rest(p, end, escaped);
        }
        p += 8;
    }
#endif
    return skip_string_rest(p, end, escaped);
}

static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static ptr skip_number(ptr p, ptr end)
{
    if (p < end && *p == '-')
        p++;
    if (p >= end)
        return NULL;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (p < end && is_digit(*p))
            p++;
    else
        return NULL;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
    }
    return p;
}

static inline ptr skip_literal(ptr p, ptr end, const char *word, Py_ssize_t n)
{
    return end - p >= n && memcmp(p, word, (size_t)n) == 0 ? p + n : NULL;
}

/* p: the first byte of a value. Returns just after it, or NULL when it is not valid JSON (or nested
 * beyond MAX_DEPTH). Iterative: the open containers are kept in ``open``. */
static ptr skip_value(ptr p, ptr end)
{
    unsigned char open[MAX_DEPTH];
    int depth = 0;
    int escaped;
    for (;;) {
        /* a value starts at p */
        if (p >= end)
            return NULL;
        switch (*p) {
        case '{':
        case '[': {
            unsigned char close = *p == '{' ? '}' : ']';
            if (depth == MAX_DEPTH)
                return NULL;
            p = skip_ws(p + 1, end);
            if (p < end && *p == close) {
                p++;
                break;
            }
            open[depth++] = close;
            if (close == ']')
                continue;  /* a value next */
            goto name;
        }
        case '"':
            p = skip_string(p + 1, end, &escaped);
            break;
        case 't':
            p = skip_literal(p, end, "true", 4);
            break;
        case 'f':
            p = skip_literal(p, end, "false", 5);
            break;
        case 'n':
            p = skip_literal(p, end, "null", 4);
            break;
        default:
            p = skip_number(p, end);
        }
    after_value:
        if (p == NULL)
            return NULL;
        if (depth == 0)
            return p;
        p = skip_ws(p, end);
        if (p >= end)
            return NULL;
        if (*p == open[depth - 1]) {
            p++;
            depth--;
            goto after_value;
        }
        if (*p != ',')
            return NULL;
        p = skip_ws(p + 1, end);
        if (open[depth - 1] == ']')
            continue;
    name:
        if (p >= end || *p != '"')
            return NULL;
        p = skip_string(p + 1, end, &escaped);
        if (p == NULL)
            return NULL;
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            return NULL;
        p = skip_ws(p + 1, end);
    }
}

static inline int ends_member(ptr p, ptr end)
{
    return p < end && (*p == ',' || *p == '}' || *p == ' ' || *p == '\n' || *p == '\r' || *p == '\t');
}

/* The members of the object that is the whole of [base, base + n): 1 and *count, or 0 when this
 * cannot tell. With ``first`` (the first document's members, over ``first_base``), a member with
 * the first's name and text at the same index is passed over with one memcmp (marked ``same``). */
static int read_members(ptr base, Py_ssize_t n, member *out, int *count, ptr first_base, const member *first,
                        int first_count)
{
    ptr p = base, end = base + n;
    int k = 0;
    if (p >= end || *p != '{')
        return 0;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') {
        p++;
    } else {
        for (;;) {
            if (k == MAX_MEMBERS || p >= end || *p != '"')
                return 0;
            int escaped = 0;
            ptr key = p + 1;
            p = skip_string(key, end, &escaped);
            if (p == NULL || escaped)
                return 0;  /* names with escapes: msgspec compares them decoded */
            Py_ssize_t key_len = (p - 1) - key;
            for (Py_ssize_t i = 0; i < key_len; i++)
                if (key[i] >= 0x80)
                    return 0;  /* names beyond ASCII: msgspec checks their UTF-8 */
            p = skip_ws(p, end);
            if (p >= end || *p != ':')
                return 0;
            p = skip_ws(p + 1, end);
            ptr value = p;
            int same = 0;
            if (first != NULL && k < first_count && first[k].key_len == key_len
                && memcmp(first_base + first[k].key, key, (size_t)key_len) == 0) {
                Py_ssize_t len = first[k].value_len;
                /* The same text, then what may end a member: the same value, valid as it was there. */
                if (end - value > len && memcmp(first_base + first[k].value, value, (size_t)len) == 0
                    && ends_member(value + len, end)) {
                    p = value + len;
                    same = 1;
                }
            }
            if (!same) {
                p = skip_value(value, end);
                if (p == NULL)
                    return 0;
            }
            out[k].key = key - base;
            out[k].key_len = key_len;
            out[k].value = value - base;
            out[k].value_len = p - value;
            out[k].same = same;
            k++;
            p = skip_ws(p, end);
            if (p >= end)
                return 0;
            if (*p == '}') {
                p++;
                break;
            }
            if (*p != ',')
                return 0;
            p = skip_ws(p + 1, end);
        }
    }
    if (skip_ws(p, end) != end)
        return 0;  /* text after the object */
    *count = k;
    return 1;
}

static inline unsigned int name_hash(ptr s, Py_ssize_t n)
{
    unsigned int h = 2166136261u;  /* FNV-1a */
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 16777619u;
    return h;
}

/* Index of the member named like ``key`` in ``table`` (filled by ``index_names``), or -1. */
static int find_name(const short *table, ptr base, const member *m, ptr key, Py_ssize_t key_len)
{
    unsigned int slot = name_hash(key, key_len) & (TABLE - 1);
    while (table[slot]) {
        const member *c = &m[table[slot] - 1];
        if (c->key_len == key_len && memcmp(base + c->key, key, (size_t)key_len) == 0)
            return table[slot] - 1;
        slot = (slot + 1) & (TABLE - 1);
    }
    return -1;
}

/* Fill ``table`` with the names of ``m``: 0 when two members share a name. */
static int index_names(short *table, ptr base, const member *m, int count)
{
    memset(table, 0, sizeof(short) * TABLE);
    for (int i = 0; i < count; i++) {
        unsigned int slot = name_hash(base + m[i].key, m[i].key_len) & (TABLE - 1);
        while (table[slot]) {
            const member *c = &m[table[slot] - 1];
            if (c->key_len == m[i].key_len && memcmp(base + c->key, base + m[i].key, (size_t)m[i].key_len) == 0)
                return 0;
            slot = (slot + 1) & (TABLE - 1);
        }
        table[slot] = (short)(i + 1);
    }
    return 1;
}

/* What a differing member is, for ``changed_members``. */
enum { K_STRING = 0, K_INTEGER = 1, K_BOOLEAN = 2, K_WALK = 3, K_MISSING = 4, K_EXTRA = 5 };

/* A value whose text differs from the other side's: a string without escapes, an integer (not -0),
 * true or false, or something the Python walk decides (K_WALK). */
static int value_class(ptr v, Py_ssize_t n)
{
    if (n == 0)
        return K_WALK;
    unsigned char c = v[0];
    if (c == '"')
        return memchr(v, '\\', (size_t)n) ? K_WALK : K_STRING;
    if (c == 't' || c == 'f')
        return K_BOOLEAN;
    if (c == '-' || is_digit(c)) {
        Py_ssize_t i = c == '-';
        if (i == 1 && n == 2 && v[1] == '0')
            return K_WALK;  /* -0, equal to 0 */
        for (; i < n; i++)
            if (!is_digit(v[i]))
                return K_WALK;
        return K_INTEGER;
    }
    return K_WALK;
}

/* Where the differing members go: a list of (name, a's text, b's text), or with ``kinds`` a
 * signature: each member as its name, NUL, its kind as a digit, NUL (names hold no NUL: JSON
 * writes it escaped, and names with escapes are not read here). One str, not GC-tracked. */
typedef struct {
    int kinds;
    PyObject *list;
    char *sig;
    Py_ssize_t len, cap;
    char local[512];
} found;

static void found_free(found *f)
{
    Py_CLEAR(f->list);
    if (f->sig != f->local)
        PyMem_Free(f->sig);
    f->sig = f->local;
}

/* -1 on a Python error. */
static int add_member(found *f, ptr key_base, const member *named, ptr a_base, const member *a, ptr b_base,
                      const member *b)
{
    if (f->kinds) {
        int kind = K_EXTRA;
        if (a != NULL && b == NULL)
            kind = K_MISSING;
        else if (a != NULL) {
            kind = value_class(a_base + a->value, a->value_len);
            if (kind != value_class(b_base + b->value, b->value_len))
                kind = K_WALK;
        }
        Py_ssize_t need = f->len + named->key_len + 3;
        if (need > f->cap) {
            Py_ssize_t cap = need > 2 * f->cap ? need : 2 * f->cap;
            char *grown = PyMem_Malloc((size_t)cap);
            if (grown == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            memcpy(grown, f->sig, (size_t)f->len);
            if (f->sig != f->local)
                PyMem_Free(f->sig);
            f->sig = grown;
            f->cap = cap;
        }
        memcpy(f->sig + f->len, key_base + named->key, (size_t)named->key_len);
        f->len += named->key_len;
        f->sig[f->len++] = '\0';
        f->sig[f->len++] = (char)('0' + kind);
        f->sig[f->len++] = '\0';
        return 0;
    }
    PyObject *key = PyUnicode_DecodeUTF8((const char *)key_base + named->key, named->key_len, "strict");
    PyObject *va = a ? PyBytes_FromStringAndSize((const char *)a_base + a->value, a->value_len) : Py_NewRef(Py_None);
    PyObject *vb = b ? PyBytes_FromStringAndSize((const char *)b_base + b->value, b->value_len) : Py_NewRef(Py_None);
    PyObject *item = (key && va && vb) ? PyTuple_Pack(3, key, va, vb) : NULL;
    Py_XDECREF(key);
    Py_XDECREF(va);
    Py_XDECREF(vb);
    if (item == NULL)
        return -1;
    int failed = PyList_Append(f->list, item);
    Py_DECREF(item);
    return failed;
}

static inline int same_text(ptr a_base, const member *a, ptr b_base, const member *b)
{
    return a->value_len == b->value_len && memcmp(a_base + a->value, b_base + b->value, (size_t)a->value_len) == 0;
}

/* 1 with the differing members in ``f``, 0 when this cannot tell, -1 on a Python error. */
static int find_differing(found *f, ptr a_base, Py_ssize_t a_len, ptr b_base, Py_ssize_t b_len)
{
    member a[MAX_MEMBERS], b[MAX_MEMBERS];
    short table[TABLE];
    int na, nb;
    if (!read_members(a_base, a_len, a, &na, NULL, NULL, 0)
        || !read_members(b_base, b_len, b, &nb, a_base, a, na) || !index_names(table, a_base, a, na))
        return 0;
    int in_order = na == nb;
    for (int i = 0; in_order && i < nb; i++)
        in_order = b[i].same || (b[i].key_len == a[i].key_len
                                 && memcmp(a_base + a[i].key, b_base + b[i].key, (size_t)a[i].key_len) == 0);
    if (in_order) {  /* the same names in the same order: a has no two of a name, nor has b */
        for (int i = 0; i < na; i++) {
            if (!b[i].same && !same_text(a_base, &a[i], b_base, &b[i])
                && add_member(f, a_base, &a[i], a_base, &a[i], b_base, &b[i]) < 0)
                return -1;
        }
        return 1;
    }
    int matched[MAX_MEMBERS];  /* per member of a taken: the index of b's member of that name */
    char taken[MAX_MEMBERS];
    memset(taken, 0, sizeof(taken));
    for (int j = 0; j < nb; j++) {
        int i = find_name(table, a_base, a, b_base + b[j].key, b[j].key_len);
        if (i >= 0) {
            if (taken[i])
                return 0;  /* two members of b of one name */
            taken[i] = 1;
            matched[i] = j;
        }
    }
    short b_table[TABLE];
    if (!index_names(b_table, b_base, b, nb))
        return 0;  /* two members of b of one name that a lacks */
    for (int i = 0; i < na; i++) {
        const member *other = taken[i] ? &b[matched[i]] : NULL;
        if (other != NULL && same_text(a_base, &a[i], b_base, other))
            continue;
        if (add_member(f, a_base, &a[i], a_base, &a[i], b_base, other) < 0)
            return -1;
    }
    for (int j = 0; j < nb; j++) {  /* b's names that a lacks */
        if (find_name(table, a_base, a, b_base + b[j].key, b[j].key_len) < 0
            && add_member(f, b_base, &b[j], a_base, NULL, b_base, &b[j]) < 0)
            return -1;
    }
    return 1;
}

static PyObject *differing(ptr a_base, Py_ssize_t a_len, ptr b_base, Py_ssize_t b_len, int kinds)
{
    found f;
    f.kinds = kinds;
    f.list = NULL;
    f.sig = f.local;
    f.len = 0;
    f.cap = sizeof(f.local);
    if (!kinds && (f.list = PyList_New(0)) == NULL)
        return NULL;
    int done = find_differing(&f, a_base, a_len, b_base, b_len);
    PyObject *result = NULL;
    if (done == 0)
        result = Py_NewRef(Py_None);
    else if (done > 0)
        result = kinds ? PyUnicode_DecodeASCII(f.sig, f.len, "strict") : Py_NewRef(f.list);
    found_free(&f);
    return result;
}

PyDoc_STRVAR(differing_members_doc,
"differing_members(a, b, /)\n--\n\n"
"The top-level members of two JSON objects (UTF-8 texts) whose texts differ, as a list of\n"
"(name, a's text or None, b's text or None): a's members in a's order, then those only b has.\n"
"None when this cannot tell (not two objects, not valid JSON, a name with escapes or beyond ASCII,\n"
"two members of one name, more than 256 members, nested deeper than 32): read them with msgspec then.");

static PyObject *two_texts(PyObject *const *args, Py_ssize_t nargs, int kinds)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "two texts expected");
        return NULL;
    }
    Py_buffer a, b;
    if (PyObject_GetBuffer(args[0], &a, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &b, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&a);
        return NULL;
    }
    PyObject *result = differing((ptr)a.buf, a.len, (ptr)b.buf, b.len, kinds);
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    return result;
}

static PyObject *differing_members(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return two_texts(args, nargs, 0);
}

PyDoc_STRVAR(changed_members_doc,
"changed_members(a, b, /)\n--\n\n"
"``differing_members`` without the texts, as one str: per member its name, NUL, its kind as a digit,\n"
"NUL. Kinds: 0 two strings without escapes, 1 two integers (not -0), 2 true and false (values that\n"
"differ whatever the options but a float tolerance), 3 the walk decides, 4 missing from b, 5 only in b.\n"
"None when this cannot tell.");

static PyObject *changed_members(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return two_texts(args, nargs, 1);
}

/* Whether ``item`` is a (name, value) tuple of bytes whose name is ``want`` (lower case), in any case. */
static int header_named(PyObject *item, const char *want, Py_ssize_t n, int *odd)
{
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2 || !PyBytes_CheckExact(PyTuple_GET_ITEM(item, 0))
        || !PyBytes_CheckExact(PyTuple_GET_ITEM(item, 1))) {
        *odd = 1;
        return 0;
    }
    PyObject *name = PyTuple_GET_ITEM(item, 0);
    if (PyBytes_GET_SIZE(name) != n)
        return 0;
    const char *s = PyBytes_AS_STRING(name);
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != want[i])
            return 0;
    }
    return 1;
}

/* The index of the next header of ``list`` from ``i`` named ``want``: its length when none, -1 when
 * the list holds something else than (bytes, bytes) tuples. */
static Py_ssize_t next_named(PyObject *list, Py_ssize_t i, const char *want, Py_ssize_t n)
{
    Py_ssize_t size = PyList_GET_SIZE(list);
    int odd = 0;
    for (; i < size; i++) {
        if (header_named(PyList_GET_ITEM(list, i), want, n, &odd))
            return i;
        if (odd)
            return -1;
    }
    return size;
}

PyDoc_STRVAR(headers_agree_doc,
"headers_agree(a, b, names, /)\n--\n\n"
"True when two lists of (name, value) header bytes have no content-encoding and, for each of\n"
"``names`` (lower-case bytes), the same values in the same order; False when they may not (the\n"
"caller reads them itself then).");

static PyObject *headers_agree(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyList_CheckExact(args[0]) || !PyList_CheckExact(args[1]) || !PyTuple_CheckExact(args[2]))
        Py_RETURN_FALSE;
    PyObject *a = args[0], *b = args[1], *names = args[2];
    if (next_named(a, 0, "content-encoding", 16) != PyList_GET_SIZE(a)
        || next_named(b, 0, "content-encoding", 16) != PyList_GET_SIZE(b))
        Py_RETURN_FALSE;  /* or a list of something else */
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(names); j++) {
        PyObject *name = PyTuple_GET_ITEM(names, j);
        if (!PyBytes_CheckExact(name))
            Py_RETURN_FALSE;
        const char *want = PyBytes_AS_STRING(name);
        Py_ssize_t n = PyBytes_GET_SIZE(name);
        Py_ssize_t i = next_named(a, 0, want, n), k = next_named(b, 0, want, n);
        for (;;) {
            int a_done = i == PyList_GET_SIZE(a), b_done = k == PyList_GET_SIZE(b);
            if (a_done && b_done)
                break;
            if (a_done || b_done || i < 0 || k < 0)
                Py_RETURN_FALSE;
            PyObject *va = PyTuple_GET_ITEM(PyList_GET_ITEM(a, i), 1), *vb = PyTuple_GET_ITEM(PyList_GET_ITEM(b, k), 1);
            if (PyBytes_GET_SIZE(va) != PyBytes_GET_SIZE(vb)
                || memcmp(PyBytes_AS_STRING(va), PyBytes_AS_STRING(vb), (size_t)PyBytes_GET_SIZE(va)) != 0)
                Py_RETURN_FALSE;
            i = next_named(a, i + 1, want, n);
            k = next_named(b, k + 1, want, n);
        }
    }
    Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
    {"differing_members", (PyCFunction)(void (*)(void))differing_members, METH_FASTCALL, differing_members_doc},
    {"changed_members", (PyCFunction)(void (*)(void))changed_members, METH_FASTCALL, changed_members_doc},
    {"headers_agree", (PyCFunction)(void (*)(void))headers_agree, METH_FASTCALL, headers_agree_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_members", "Top-level members of two JSON objects whose texts differ (rawjson.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__members(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "VERSION", MEMBERS_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
