/*
 * safetensors.c — mmap and validate safetensors files (single file or sharded with an index).
 *
 * File layout: u64 little-endian header length N, N bytes of JSON
 * {name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
 * then the data; offsets are relative to the first byte after the header.
 */
#include <cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/errors.h"
#include "base/filemap.h"
#include "runtime/json_num.h"
#include "runtime/quant.h"
#include "runtime/safetensors.h"

/* Bytes per element of a safetensors dtype, or 0 when the name is unknown. */
static size_t st_dtype_bytes(const char *s) {
    static const struct { const char *name; size_t size; } table[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
        {"I8", 1},  {"U8", 1},  {"U16", 2}, {"U32", 4},  {"U64", 8}, {"BOOL", 1},
        {"F8_E4M3", 1}, {"F8_E5M2", 1},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(s, table[i].name) == 0) return table[i].size;
    return 0;
}

/* ---- the names' hash: open addressing, linear probing; slots hold entry index + 1 ---- */

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The slot holding `name`, or the empty slot where it would go. Needs n_slots > 0. */
static size_t st_slot(const st_table *t, const char *name) {
    size_t mask = t->n_slots - 1, i = (size_t)name_hash(name) & mask;
    while (t->slots[i] && strcmp(t->entries[t->slots[i] - 1].name, name) != 0) i = (i + 1) & mask;
    return i;
}

/* Makes room in the hash for `need` entries (at most half full). False when out of memory. */
static bool st_reserve(st_table *t, size_t need) {
    if (need * 2 <= t->n_slots) return true;
    size_t cap = t->n_slots ? t->n_slots : 64;
    while (cap < need * 2) cap *= 2;
    int *old = t->slots;
    size_t old_n = t->n_slots;
    t->slots = calloc(cap, sizeof *t->slots);
    if (!t->slots) { t->slots = old; return false; }
    t->n_slots = cap;
    for (size_t i = 0; i < old_n; i++)
        if (old[i]) t->slots[st_slot(t, t->entries[old[i] - 1].name)] = old[i];
    free(old);
    return true;
}

/* A tensor's data range in its file, for the overlap check. */
typedef struct { uint64_t begin, end; int entry; } st_range;

static int cmp_range(const void *a, const void *b) {
    const st_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->entry > y->entry) - (x->entry < y->entry);
}

/* Two tensors of one file whose data ranges [begin, end) overlap (zero-length ones never do):
 * sorted by begin, each range must start at or after the furthest end before it. */
static moge_status st_check_overlap(const st_table *t, st_range *r, int count, const char *path, char *err, size_t n) {
    qsort(r, (size_t)count, sizeof *r, cmp_range);
    int far = -1;
    for (int i = 0; i < count; i++) {
        if (far >= 0 && r[i].begin < r[far].end)
            return set_err(err, n, MOGE_ERR_FORMAT, "%s: tensors %s (data_offsets [%llu, %llu]) and %s ([%llu, %llu]) overlap",
                           path, t->entries[r[far].entry].name, (unsigned long long)r[far].begin, (unsigned long long)r[far].end,
                           t->entries[r[i].entry].name, (unsigned long long)r[i].begin, (unsigned long long)r[i].end);
        if (far < 0 || r[i].end > r[far].end) far = i;
    }
    return MOGE_OK;
}

/* Appends a file entry for the mapping (map, size) of path to the table (which owns the mapping
 * from then on); *out the new entry. On failure the mapping stays the caller's. */
static moge_status append_file(st_table *t, const char *path, void *map, size_t size, st_file **out, char *err, size_t n) {
    st_file *files = realloc(t->files, (size_t)(t->n_files + 1) * sizeof *files);
    if (!files) return set_err(err, n, MOGE_ERR_NOMEM, "%s: out of memory", path);
    t->files = files;
    st_file *f = &t->files[t->n_files];
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return set_err(err, n, MOGE_ERR_NOMEM, "%s: out of memory", path);
    f->map = map;
    f->size = size;
    f->quant = MOGE_QUANT_NONE;
    t->n_files++;
    *out = f;
    return MOGE_OK;
}

/* Maps path (at least the header length's 8 bytes) and appends it to the table as file *f. */
static moge_status st_map_file(st_table *t, const char *path, st_file **f, char *err, size_t n) {
    file_map fm;
    moge_status st = file_map_open(&fm, path, 8, "a safetensors header", err, n);
    if (st != MOGE_OK) return st;
    if ((st = append_file(t, path, fm.data, fm.size, f, err, n)) != MOGE_OK) file_map_close(&fm);
    return st;
}

/* The JSON header of mapped file f (*root, a JSON object) and its data section (*data, *data_size). */
static moge_status st_parse_header(const st_file *f, cJSON **root, const char **data, size_t *data_size, char *err, size_t n) {
    const unsigned char *p = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen == 0 || hlen > f->size - 8)
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)",
                       f->path, (unsigned long long)hlen, f->size);
    *data = (const char *)f->map + 8 + hlen;
    *data_size = f->size - 8 - (size_t)hlen;
    *root = cJSON_ParseWithLength((const char *)f->map + 8, (size_t)hlen);
    if (!*root || !cJSON_IsObject(*root)) {
        cJSON_Delete(*root);
        *root = NULL;
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: the header is not a JSON object", f->path);
    }
    return MOGE_OK;
}

/* The header's __metadata__: "moge.quant" (a pre-quantized file) and "moge.layout" into f. */
static moge_status st_read_metadata(st_file *f, const cJSON *root, char *err, size_t n) {
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    const cJSON *mq = cJSON_IsObject(meta) ? cJSON_GetObjectItemCaseSensitive(meta, "moge.quant") : NULL;
    if (mq && (!cJSON_IsString(mq) || !quant_format_parse(mq->valuestring, &f->quant)))
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: __metadata__ \"moge.quant\" must be \"q8\", \"q4\", \"w8a8\" or \"w4a8\"", f->path);
    const cJSON *ml = cJSON_IsObject(meta) ? cJSON_GetObjectItemCaseSensitive(meta, "moge.layout") : NULL;
    if (ml) {
        const char *why = NULL;
        if (!mq) why = "without \"moge.quant\"";
        else if (!cJSON_IsString(ml) || strcmp(ml->valuestring, "panel16") != 0) why = "must be \"panel16\" (or absent: row-major blocks)";
        if (why) return set_err(err, n, MOGE_ERR_FORMAT, "%s: __metadata__ \"moge.layout\" %s", f->path, why);
        f->panel = TENSOR_PANEL;
    }
    return MOGE_OK;
}

/* The dtype, shape and data range [*begin, *end) of header entry `it` (tensor `name`) into e,
 * checked against the data section's data_size bytes; *esize the dtype's element size. */
static moge_status st_parse_entry(const cJSON *it, const char *path, const char *name, size_t data_size, st_entry *e,
                                  size_t *esize, uint64_t *begin, uint64_t *end, char *err, size_t n) {
    cJSON *jd = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    cJSON *js = cJSON_GetObjectItemCaseSensitive(it, "shape");
    cJSON *jo = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    if (!cJSON_IsObject(it) || !cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2)
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: tensor %s: header entry needs \"dtype\", \"shape\" and two \"data_offsets\"", path, name);
    memset(e, 0, sizeof *e);
    *esize = st_dtype_bytes(jd->valuestring);
    if (*esize == 0 || strlen(jd->valuestring) >= sizeof e->dtype_str)
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: tensor %s: unknown dtype \"%s\"", path, name, jd->valuestring);
    strcpy(e->dtype_str, jd->valuestring);
    e->n_dims = cJSON_GetArraySize(js);
    if (e->n_dims > ST_MAX_DIMS)
        return set_err(err, n, MOGE_ERR_UNSUPPORTED, "%s: tensor %s has %d dimensions (at most %d supported)", path, name, e->n_dims, ST_MAX_DIMS);
    uint64_t numel = 1;
    int d = 0, bad = 0;
    for (cJSON *dim = js->child; dim; dim = dim->next, d++) {
        if (!json_integer(dim, 0, 9.0e15, &e->shape[d])) { bad = 1; break; }
        if (e->shape[d] != 0 && numel > UINT64_MAX / 16 / (uint64_t)e->shape[d]) { bad = 1; break; }
        numel *= (uint64_t)e->shape[d];
    }
    /* offsets up to 2^53 (9e15 bytes): every such double is an exact integer */
    int64_t b = 0, en = 0;
    if (bad || !json_integer(cJSON_GetArrayItem(jo, 0), 0, 9.0e15, &b) || !json_integer(cJSON_GetArrayItem(jo, 1), 0, 9.0e15, &en) || en < b)
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: tensor %s: invalid shape or data_offsets", path, name);
    *begin = (uint64_t)b, *end = (uint64_t)en;
    if (*end > data_size)
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: tensor %s: data_offsets [%llu, %llu] run past the end of the file (%zu data bytes)",
                       path, name, (unsigned long long)*begin, (unsigned long long)*end, data_size);
    if (*end - *begin != numel * *esize)
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: tensor %s: data_offsets span %llu bytes but %s of that shape needs %llu", path, name,
                       (unsigned long long)(*end - *begin), e->dtype_str, (unsigned long long)(numel * *esize));
    e->supported = 1;
    if (strcmp(e->dtype_str, "F32") == 0) e->type = DTYPE_F32;
    else if (strcmp(e->dtype_str, "F16") == 0) e->type = DTYPE_F16;
    else if (strcmp(e->dtype_str, "BF16") == 0) e->type = DTYPE_BF16;
    else e->supported = 0;
    e->nbytes = (size_t)(*end - *begin);
    return MOGE_OK;
}

/* Points e at its data (data + begin), or at an aligned copy when that is misaligned in the file
 * for the element size esize (a pre-quantized file's blocks start with an f32 scale), and names
 * it: e is ready for the table. */
static moge_status st_place_entry(const st_file *f, st_entry *e, const char *name, const char *data, uint64_t begin, size_t esize,
                                  char *err, size_t n) {
    e->data = data + begin;
    size_t align = f->quant != MOGE_QUANT_NONE && strcmp(e->dtype_str, "U8") == 0 ? sizeof(float) : esize;
    if (((uintptr_t)e->data % align) != 0) { /* misaligned in the file: keep an aligned copy */
        e->copy = malloc(e->nbytes ? e->nbytes : 1);
        if (!e->copy) return set_err(err, n, MOGE_ERR_NOMEM, "%s: out of memory", f->path);
        memcpy(e->copy, e->data, e->nbytes);
        e->data = e->copy;
    }
    e->name = strdup(name);
    if (!e->name) {
        free(e->copy);
        return set_err(err, n, MOGE_ERR_NOMEM, "%s: out of memory", f->path);
    }
    return MOGE_OK;
}

/* A tensor name already in the table (from this file or another shard), or MOGE_OK. */
static moge_status st_check_new(const st_table *t, size_t slot, int file_index, const char *path, const char *name, char *err, size_t n) {
    if (!t->slots[slot]) return MOGE_OK;
    const st_entry *first = &t->entries[t->slots[slot] - 1];
    if (first->file == file_index) return set_err(err, n, MOGE_ERR_FORMAT, "%s: tensor %s appears twice in the header", path, name);
    return set_err(err, n, MOGE_ERR_FORMAT, "tensor %s is in two shards: %s and %s", name, t->files[first->file].path, path);
}

/* Maps one file and appends its entries to the table. */
static moge_status st_add_file(st_table *t, const char *path, char *err, size_t n) {
    st_file *f;
    cJSON *root = NULL;
    const char *data = NULL;
    size_t data_size = 0;
    moge_status st = st_map_file(t, path, &f, err, n);
    if (st != MOGE_OK) return st;
    int file_index = t->n_files - 1;
    if ((st = st_parse_header(f, &root, &data, &data_size, err, n)) != MOGE_OK) return st;
    if ((st = st_read_metadata(f, root, err, n)) != MOGE_OK) {
        cJSON_Delete(root);
        return st;
    }
    int count = cJSON_GetArraySize(root);
    st_entry *entries = realloc(t->entries, (size_t)(t->n_entries + count) * sizeof *entries);
    if (entries) t->entries = entries;
    st_range *ranges = malloc((size_t)(count ? count : 1) * sizeof *ranges);
    if (!entries || !ranges || !st_reserve(t, (size_t)t->n_entries + (size_t)count)) {
        free(ranges);
        cJSON_Delete(root);
        return set_err(err, n, MOGE_ERR_NOMEM, "%s: out of memory", path);
    }
    int n_ranges = 0;
    /* cJSON keeps every member of an object, a repeated name too: each is checked here */
    for (cJSON *it = root->child; it && st == MOGE_OK; it = it->next) {
        const char *name = it->string;
        if (strcmp(name, "__metadata__") == 0) continue;
        size_t slot = st_slot(t, name), esize = 0;
        uint64_t begin = 0, end = 0;
        st_entry e;
        if ((st = st_check_new(t, slot, file_index, path, name, err, n)) != MOGE_OK ||
            (st = st_parse_entry(it, path, name, data_size, &e, &esize, &begin, &end, err, n)) != MOGE_OK ||
            (st = st_place_entry(f, &e, name, data, begin, esize, err, n)) != MOGE_OK)
            break;
        e.file = file_index;
        if (end > begin) ranges[n_ranges++] = (st_range){begin, end, t->n_entries};
        t->entries[t->n_entries++] = e;
        t->slots[slot] = t->n_entries;
    }
    cJSON_Delete(root);
    if (st == MOGE_OK) st = st_check_overlap(t, ranges, n_ranges, path, err, n);
    free(ranges);
    return st;
}

const st_entry *st_find(const st_table *t, const char *name) {
    if (!t->n_slots) return NULL;
    int k = t->slots[st_slot(t, name)];
    return k ? &t->entries[k - 1] : NULL;
}

void st_release(const st_entry *e) {
    long page = sysconf(_SC_PAGESIZE);
    if (e->copy && e->release_copy) { /* owned by the table: the entry's data is not read again */
        st_entry *w = (st_entry *)e;
        free(w->copy);
        w->copy = NULL;
        w->data = NULL;
        return;
    }
    if (e->copy || page <= 0) return;
    uintptr_t lo = ((uintptr_t)e->data + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
    uintptr_t hi = ((uintptr_t)e->data + e->nbytes) / (uintptr_t)page * (uintptr_t)page;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* Opens the shards named by an index file and checks that each mapped tensor is where the
 * index says. */
static moge_status st_open_index(st_table *t, const char *dir, const char *index_path, char *err, size_t n) {
    cJSON *root;
    moge_status st = json_read_file(index_path, &root, err, n);
    if (st != MOGE_OK) return st;
    cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: missing object \"weight_map\"", index_path);
    }
    char path[4096];
    /* Open each distinct shard once, in order of first mention. */
    for (cJSON *it = map->child; it && st == MOGE_OK; it = it->next) {
        if (!cJSON_IsString(it) || strchr(it->valuestring, '/') || it->valuestring[0] == '.' || !it->valuestring[0]) {
            st = set_err(err, n, MOGE_ERR_FORMAT, "%s: weight_map[\"%s\"]: expected a shard file name", index_path, it->string);
            break;
        }
        snprintf(path, sizeof path, "%s/%s", dir, it->valuestring);
        int seen = 0; /* among the shards opened: the last one first (entries come grouped) */
        for (int k = t->n_files - 1; k >= 0 && !seen; k--) seen = strcmp(t->files[k].path, path) == 0;
        if (!seen) st = st_add_file(t, path, err, n);
    }
    for (cJSON *it = map->child; it && st == MOGE_OK; it = it->next) {
        const st_entry *e = st_find(t, it->string);
        snprintf(path, sizeof path, "%s/%s", dir, it->valuestring);
        if (!e || strcmp(t->files[e->file].path, path) != 0)
            st = set_err(err, n, MOGE_ERR_FORMAT, "%s: tensor %s is listed in %s but %s does not hold it",
                         index_path, it->string, it->valuestring, path);
    }
    cJSON_Delete(root);
    return st;
}

moge_status st_open_dir(st_table *t, const char *dir, char *err, size_t n) {
    memset(t, 0, sizeof *t);
    char single[4096], index[4096];
    snprintf(single, sizeof single, "%s/model.safetensors", dir);
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    moge_status st;
    if (access(single, F_OK) == 0) st = st_add_file(t, single, err, n);
    else if (access(index, F_OK) == 0) st = st_open_index(t, dir, index, err, n);
    else st = set_err(err, n, MOGE_ERR_IO, "%s: no such file (nor model.safetensors.index.json)", single);
    if (st != MOGE_OK) st_close(t);
    return st;
}

moge_status st_table_add_file(st_table *t, const char *path, void *map, size_t size, char *err, size_t n) {
    st_file *f;
    moge_status st = append_file(t, path, map, size, &f, err, n);
    if (st == MOGE_OK) f->gguf = true;
    return st;
}

moge_status st_table_add(st_table *t, st_entry *e, const char *what, char *err, size_t n) {
    st_entry *entries = NULL;
    if (t->n_entries < INT32_MAX - 1 && st_reserve(t, (size_t)t->n_entries + 1))
        entries = realloc(t->entries, (size_t)(t->n_entries + 1) * sizeof *entries);
    if (!entries) {
        free(e->name);
        free(e->copy);
        return set_err(err, n, MOGE_ERR_NOMEM, "%s: out of memory", what);
    }
    t->entries = entries;
    size_t slot = st_slot(t, e->name);
    if (t->slots[slot]) {
        moge_status st = set_err(err, n, MOGE_ERR_FORMAT, "%s: tensor %s appears twice", what, e->name);
        free(e->name);
        free(e->copy);
        return st;
    }
    t->entries[t->n_entries++] = *e;
    t->slots[slot] = t->n_entries;
    return MOGE_OK;
}

void st_close(st_table *t) {
    if (!t) return;
    for (int i = 0; i < t->n_entries; i++) {
        free(t->entries[i].name);
        free(t->entries[i].copy);
    }
    for (int i = 0; i < t->n_files; i++) {
        file_map_close(&(file_map){t->files[i].map, t->files[i].size});
        free(t->files[i].path);
    }
    free(t->entries);
    free(t->files);
    free(t->slots);
    memset(t, 0, sizeof *t);
}
