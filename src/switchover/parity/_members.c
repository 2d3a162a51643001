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

static inline ptr skip_ws(ptr p, ptr end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
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

/* p: just after an opening quote. Returns just after the closing quote, or NULL when the text is
 * not a valid string. *escaped is set when the string holds an escape. Bytes above 0x7f are taken
 * as they are: the caller has checked that the whole text is UTF-8. */
static ptr skip_string(ptr p, ptr end, int *escaped)
{
    while (p < end) {
        unsigned char c = *p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
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
            if (depth == MAX_DEPTH)
                return NULL;
            p = skip_ws(p + 1, end);
            if (p < end && *p == '}') {
                p++;
                break;
            }
            open[depth++] = '}';
            goto name;
        case '[':
            if (depth == MAX_DEPTH)
                return NULL;
            p = skip_ws(p + 1, end);
            if (p < end && *p == ']') {
                p++;
                break;
            }
            open[depth++] = ']';
            continue;
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

/* Append (name, a's text or None, b's text or None) to ``out``; -1 on a Python error. */
static int add_member(PyObject *out, ptr key_base, const member *named, ptr a_base, const member *a, ptr b_base,
                      const member *b)
{
    PyObject *key = PyUnicode_DecodeUTF8((const char *)key_base + named->key, named->key_len, "strict");
    if (key == NULL)
        return -1;
    PyObject *va = a ? PyBytes_FromStringAndSize((const char *)a_base + a->value, a->value_len) : Py_NewRef(Py_None);
    PyObject *vb = b ? PyBytes_FromStringAndSize((const char *)b_base + b->value, b->value_len) : Py_NewRef(Py_None);
    PyObject *item = (va && vb) ? PyTuple_Pack(3, key, va, vb) : NULL;
    Py_DECREF(key);
    Py_XDECREF(va);
    Py_XDECREF(vb);
    if (item == NULL)
        return -1;
    int failed = PyList_Append(out, item);
    Py_DECREF(item);
    return failed;
}

static inline int same_text(ptr a_base, const member *a, ptr b_base, const member *b)
{
    return a->value_len == b->value_len && memcmp(a_base + a->value, b_base + b->value, (size_t)a->value_len) == 0;
}

static PyObject *differing(ptr a_base, Py_ssize_t a_len, ptr b_base, Py_ssize_t b_len)
{
    member a[MAX_MEMBERS], b[MAX_MEMBERS];
    short table[TABLE];
    int na, nb;
    if (!read_members(a_base, a_len, a, &na, NULL, NULL, 0)
        || !read_members(b_base, b_len, b, &nb, a_base, a, na) || !index_names(table, a_base, a, na))
        Py_RETURN_NONE;
    int in_order = na == nb;
    for (int i = 0; in_order && i < nb; i++)
        in_order = b[i].same || (b[i].key_len == a[i].key_len
                                 && memcmp(a_base + a[i].key, b_base + b[i].key, (size_t)a[i].key_len) == 0);
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    if (in_order) {  /* the same names in the same order: a has no two of a name, nor has b */
        for (int i = 0; i < na; i++) {
            if (!b[i].same && !same_text(a_base, &a[i], b_base, &b[i])
                && add_member(out, a_base, &a[i], a_base, &a[i], b_base, &b[i]) < 0)
                goto error;
        }
        return out;
    }
    int matched[MAX_MEMBERS];  /* per member of a: the index of b's member of that name, or -1 */
    char taken[MAX_MEMBERS];
    memset(taken, 0, sizeof(taken));
    for (int j = 0; j < nb; j++) {
        int i = find_name(table, a_base, a, b_base + b[j].key, b[j].key_len);
        if (i >= 0) {
            if (taken[i]) {  /* two members of b of one name */
                Py_DECREF(out);
                Py_RETURN_NONE;
            }
            taken[i] = 1;
            matched[i] = j;
        }
    }
    for (int i = 0; i < na; i++) {
        const member *other = taken[i] ? &b[matched[i]] : NULL;
        if (other != NULL && same_text(a_base, &a[i], b_base, other))
            continue;
        if (add_member(out, a_base, &a[i], a_base, &a[i], b_base, other) < 0)
            goto error;
    }
    /* b's names that a lacks; b has no two of a name (checked now: they are not in a's table) */
    short b_table[TABLE];
    if (!index_names(b_table, b_base, b, nb)) {
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    for (int j = 0; j < nb; j++) {
        if (find_name(table, a_base, a, b_base + b[j].key, b[j].key_len) < 0
            && add_member(out, b_base, &b[j], a_base, NULL, b_base, &b[j]) < 0)
            goto error;
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

PyDoc_STRVAR(differing_members_doc,
"differing_members(a, b, /)\n--\n\n"
"The top-level members of two JSON objects (UTF-8 texts) whose texts differ, as a list of\n"
"(name, a's text or None, b's text or None): a's members in a's order, then those only b has.\n"
"None when this cannot tell (not two objects, not valid JSON, a name with escapes or beyond ASCII,\n"
"two members of one name, more than 256 members, nested deeper than 32): read them with msgspec then.");

static PyObject *differing_members(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "differing_members() takes two arguments");
        return NULL;
    }
    Py_buffer a, b;
    if (PyObject_GetBuffer(args[0], &a, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &b, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&a);
        return NULL;
    }
    PyObject *result = differing((ptr)a.buf, a.len, (ptr)b.buf, b.len);
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    return result;
}

static PyMethodDef methods[] = {
    {"differing_members", (PyCFunction)(void (*)(void))differing_members, METH_FASTCALL, differing_members_doc},
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
