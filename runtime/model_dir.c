/*
 * model_dir.c — writing a model directory atomically (model_dir.h): the output directory's
 * checks and the temporary directory renamed into place, the safetensors layout and header,
 * config.json, the side files.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/errors.h"
#include "runtime/fileio.h"
#include "runtime/gguf.h"
#include "runtime/model_dir.h"

#define DATA_ALIGN 64

bool md_join(char *buf, const char *a, const char *b) {
    int k = snprintf(buf, MD_PATH_CAP, "%s%s", a, b);
    return k >= 0 && k < MD_PATH_CAP;
}

moge_status md_write_bytes(FILE *f, const void *data, size_t len, const char *path, char *err, size_t n) {
    if (len && fwrite(data, 1, len, f) != len) return set_err(err, n, MOGE_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return MOGE_OK;
}

moge_status md_close_file(FILE *f, const char *path, char *err, size_t n) {
    bool bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    int e = errno;
    if (fclose(f) != 0 && !bad) { bad = true; e = errno; }
    return bad ? set_err(err, n, MOGE_ERR_IO, "%s: write failed: %s", path, strerror(e)) : MOGE_OK;
}

moge_status md_write_text(const char *path, const char *text, char *err, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return set_err(err, n, MOGE_ERR_IO, "%s: %s", path, strerror(errno));
    moge_status st = md_write_bytes(f, text, strlen(text), path, err, n);
    moge_status cst = md_close_file(f, path, err, n);
    return st != MOGE_OK ? st : cst;
}

int64_t md_file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* the output directory                                                                        */

/* Removes the regular files directly in dir, then dir. Returns 0 or an errno. */
static int remove_flat_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno;
    struct dirent *de;
    char path[MD_PATH_CAP], file[260];
    int rc = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(file, sizeof file, "/%s", de->d_name);
        if ((!md_join(path, dir, file) || unlink(path) != 0) && !rc) rc = errno ? errno : ENAMETOOLONG;
    }
    closedir(d);
    if (rmdir(dir) != 0 && !rc) rc = errno;
    return rc;
}

/* What is in an existing output directory: 0 entries, or the first subdirectory (*subdir). */
static moge_status inspect_out_dir(const char *dir, int *entries, char *subdir, size_t cap, char *err, size_t n) {
    DIR *d = opendir(dir);
    if (!d) return set_err(err, n, MOGE_ERR_IO, "%s: %s", dir, strerror(errno));
    struct dirent *de;
    char path[MD_PATH_CAP], file[260];
    *entries = 0;
    subdir[0] = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        (*entries)++;
        struct stat sb;
        snprintf(file, sizeof file, "/%s", de->d_name);
        if (!subdir[0] && (!md_join(path, dir, file) || (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode)))) snprintf(subdir, cap, "%s", de->d_name);
    }
    closedir(d);
    return MOGE_OK;
}

moge_status md_out_check(md_out *o, const char *in_dir, const char *out_dir, bool overwrite, char *err, size_t n) {
    memset(o, 0, sizeof *o);
    if (gguf_is_file(in_dir))
        return set_err(err, n, MOGE_ERR_UNSUPPORTED,
                       "%s: a GGUF file; this writes a model directory from a Hugging Face directory only (run the GGUF itself: its Q8_0 / "
                       "Q4_0 load as moge's q8 / q4, and --quant requantizes any of its types at load)", in_dir);
    char path[MD_PATH_CAP];
    if (!md_join(o->out, out_dir, "")) return set_err(err, n, MOGE_ERR_ARG, "%s: path too long", out_dir);
    for (size_t len = strlen(o->out); len > 1 && o->out[len - 1] == '/'; len--) o->out[len - 1] = 0; /* "x/" renames as "x" */
    /* the longest path written below, so that every one of them fits */
    if (!md_join(path, o->out, ".tmp-XXXXXX/special_tokens_map.json")) return set_err(err, n, MOGE_ERR_ARG, "%s: path too long", out_dir);
    struct stat so, si;
    o->exists = stat(o->out, &so) == 0;
    if (!o->exists) return errno == ENOENT ? MOGE_OK : set_err(err, n, MOGE_ERR_IO, "%s: %s", o->out, strerror(errno));
    if (!S_ISDIR(so.st_mode)) return set_err(err, n, MOGE_ERR_IO, "%s: exists and is not a directory", o->out);
    if (stat(in_dir, &si) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
        return set_err(err, n, MOGE_ERR_ARG, "%s: the output directory is the input directory", o->out);
    int entries = 0;
    char sub[256];
    moge_status st = inspect_out_dir(o->out, &entries, sub, sizeof sub, err, n);
    if (st != MOGE_OK || entries == 0) return st;
    if (!overwrite)
        return set_err(err, n, MOGE_ERR_IO, "%s: exists and is not empty; not overwriting it (overwrite / --force replaces it)", o->out);
    if (sub[0])
        return set_err(err, n, MOGE_ERR_IO, "%s: holds the directory %s; not replacing a directory that holds directories", o->out, sub);
    return MOGE_OK;
}

moge_status md_out_make_tmp(md_out *o, char *err, size_t n) {
    o->made = md_join(o->tmp, o->out, ".tmp-XXXXXX") && mkdtemp(o->tmp) != NULL;
    if (!o->made) return set_err(err, n, MOGE_ERR_IO, "%s: cannot create a directory next to it: %s", o->out, strerror(errno));
    chmod(o->tmp, 0755);
    return MOGE_OK;
}

moge_status md_out_path(const md_out *o, const char *file, char *buf, char *err, size_t n) {
    char name[300];
    snprintf(name, sizeof name, "/%s", file);
    return md_join(buf, o->tmp, name) ? MOGE_OK : set_err(err, n, MOGE_ERR_ARG, "%s: path too long", o->out);
}

moge_status md_out_install(md_out *o, char *err, size_t n) {
    if (!o->exists || rmdir(o->out) == 0) { /* absent, or empty */
        if (rename(o->tmp, o->out) != 0) return set_err(err, n, MOGE_ERR_IO, "%s: cannot rename %s to it: %s", o->out, o->tmp, strerror(errno));
        o->made = false;
        return MOGE_OK;
    }
    char old[MD_PATH_CAP], suffix[32];
    snprintf(suffix, sizeof suffix, ".old-%ld", (long)getpid());
    if (!md_join(old, o->out, suffix)) return set_err(err, n, MOGE_ERR_ARG, "%s: path too long", o->out);
    if (rename(o->out, old) != 0) return set_err(err, n, MOGE_ERR_IO, "%s: cannot move it aside to %s: %s", o->out, old, strerror(errno));
    if (rename(o->tmp, o->out) != 0) {
        int e = errno;
        rename(old, o->out);
        return set_err(err, n, MOGE_ERR_IO, "%s: cannot rename %s to it: %s", o->out, o->tmp, strerror(e));
    }
    o->made = false;
    int rc = remove_flat_dir(old);
    if (rc) return set_err(err, n, MOGE_ERR_IO, "%s: written, but its old contents in %s could not be removed: %s", o->out, old, strerror(rc));
    return MOGE_OK;
}

moge_status md_out_finish(md_out *o, moge_status st, const moge_model_params *mp, char *err, size_t n) {
    if (st == MOGE_OK) { /* what was written loads */
        moge_model *check = NULL;
        st = moge_model_load(o->tmp, mp, &check, err, n);
        moge_model_free(check);
    }
    if (st == MOGE_OK) st = md_out_install(o, err, n);
    if (st != MOGE_OK) md_out_discard(o);
    return st;
}

void md_out_discard(md_out *o) {
    if (o->made) remove_flat_dir(o->tmp);
    o->made = false;
}

/* ------------------------------------------------------------------------------------------ */
/* config.json and the side files                                                              */

moge_status md_write_config(const char *in_dir, const char *out_path, md_config_edit edit, void *user, char *err, size_t n) {
    char path[MD_PATH_CAP], *text = NULL;
    size_t len = 0;
    if (!md_join(path, in_dir, "/config.json")) return set_err(err, n, MOGE_ERR_ARG, "%s: path too long", in_dir);
    moge_status st = read_whole_file(path, &text, &len, err, n);
    if (st != MOGE_OK) return st;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return set_err(err, n, MOGE_ERR_FORMAT, "%s: malformed JSON", path);
    }
    st = edit(root, path, user, err, n);
    char *out = st == MOGE_OK ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (st != MOGE_OK) return st;
    if (!out) return set_err(err, n, MOGE_ERR_NOMEM, "out of memory writing %s", out_path);
    FILE *f = fopen(out_path, "wb");
    if (!f) {
        free(out);
        return set_err(err, n, MOGE_ERR_IO, "%s: %s", out_path, strerror(errno));
    }
    st = md_write_bytes(f, out, strlen(out), out_path, err, n);
    if (st == MOGE_OK) st = md_write_bytes(f, "\n", 1, out_path, err, n);
    free(out);
    moge_status cst = md_close_file(f, out_path, err, n);
    return st != MOGE_OK ? st : cst;
}

/* Copies in_dir/name to out_dir/name when it exists; *copied counts. */
static moge_status copy_if_present(const char *in_dir, const char *out_dir, const char *name, int32_t *copied, char *err, size_t n) {
    char src[MD_PATH_CAP], dst[MD_PATH_CAP], file[64];
    snprintf(file, sizeof file, "/%s", name);
    if (!md_join(src, in_dir, file) || !md_join(dst, out_dir, file)) return set_err(err, n, MOGE_ERR_ARG, "%s: path too long", in_dir);
    FILE *in = fopen(src, "rb");
    if (!in) return errno == ENOENT ? MOGE_OK : set_err(err, n, MOGE_ERR_IO, "%s: %s", src, strerror(errno));
    FILE *out = fopen(dst, "wb");
    if (!out) {
        fclose(in);
        return set_err(err, n, MOGE_ERR_IO, "%s: %s", dst, strerror(errno));
    }
    char buf[1 << 16];
    size_t got;
    moge_status st = MOGE_OK;
    while (st == MOGE_OK && (got = fread(buf, 1, sizeof buf, in)) > 0) st = md_write_bytes(out, buf, got, dst, err, n);
    if (st == MOGE_OK && ferror(in)) st = set_err(err, n, MOGE_ERR_IO, "%s: read error: %s", src, strerror(errno));
    fclose(in);
    moge_status cst = md_close_file(out, dst, err, n);
    if (st == MOGE_OK && cst == MOGE_OK) (*copied)++;
    return st != MOGE_OK ? st : cst;
}

/* The files of a model directory besides config.json and the weights. */
static const char *const SIDE_FILES[] = {
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json", "vocab.json", "merges.txt",
    "added_tokens.json", "chat_template.json", "chat_template.jinja", "generation_config.json", "LICENSE", "LICENSE.txt",
    "LICENSE.md", "NOTICE", "README.md",
};

moge_status md_copy_side_files(const char *in_dir, const char *dir, bool skip_readme, int32_t *copied, char *err, size_t n) {
    moge_status st = MOGE_OK;
    for (size_t i = 0; st == MOGE_OK && i < sizeof SIDE_FILES / sizeof SIDE_FILES[0]; i++)
        if (!(skip_readme && !strcmp(SIDE_FILES[i], "README.md"))) st = copy_if_present(in_dir, dir, SIDE_FILES[i], copied, err, n);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* safetensors                                                                                 */

/* Largest of 64, 4, 2, 1 dividing n: the order class of a tensor. */
static int align_class(uint64_t n) { return n % 64 == 0 ? 64 : n % 4 == 0 ? 4 : n % 2 == 0 ? 2 : 1; }

static int cmp_class(const void *a, const void *b) {
    const md_tensor *x = a, *y = b;
    int cx = align_class(x->nbytes), cy = align_class(y->nbytes);
    if (cx != cy) return cy - cx;
    return x->order - y->order;
}

static bool add_numbers(cJSON *arr, const double *v, int count) {
    for (int i = 0; i < count; i++) {
        cJSON *num = cJSON_CreateNumber(v[i]);
        if (!num || !cJSON_AddItemToArray(arr, num)) { cJSON_Delete(num); return false; }
    }
    return true;
}

static bool add_tensor_json(cJSON *root, const md_tensor *t) {
    cJSON *o = cJSON_AddObjectToObject(root, t->name), *shape = o ? cJSON_AddArrayToObject(o, "shape") : NULL;
    cJSON *offs = o ? cJSON_AddArrayToObject(o, "data_offsets") : NULL;
    if (!shape || !offs || !cJSON_AddStringToObject(o, "dtype", t->dtype)) return false;
    double dims[ST_MAX_DIMS], ends[2] = {(double)t->offset, (double)(t->offset + t->nbytes)};
    for (int d = 0; d < t->n_dims; d++) dims[d] = (double)t->shape[d];
    return add_numbers(shape, dims, t->n_dims) && add_numbers(offs, ends, 2);
}

moge_status md_st_layout(md_tensor *t, int count, const char *const *meta, md_st_header *h, char *err, size_t n) {
    memset(h, 0, sizeof *h);
    for (int i = 0; i < count; i++) t[i].order = i;
    qsort(t, (size_t)count, sizeof *t, cmp_class);
    for (int i = 0; i < count; i++) {
        t[i].offset = h->data_bytes;
        h->data_bytes += t[i].nbytes;
    }
    cJSON *root = cJSON_CreateObject(), *m = root ? cJSON_AddObjectToObject(root, "__metadata__") : NULL;
    bool ok = m != NULL;
    for (int i = 0; ok && meta && meta[i]; i += 2) ok = cJSON_AddStringToObject(m, meta[i], meta[i + 1]) != NULL;
    for (int i = 0; ok && i < count; i++) ok = add_tensor_json(root, &t[i]);
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) return set_err(err, n, MOGE_ERR_NOMEM, "out of memory writing the safetensors header");
    size_t len = strlen(json), padded = (8 + len + DATA_ALIGN - 1) / DATA_ALIGN * DATA_ALIGN - 8;
    h->header = malloc(padded);
    if (!h->header) {
        free(json);
        return set_err(err, n, MOGE_ERR_NOMEM, "out of memory writing the safetensors header");
    }
    memcpy(h->header, json, len);
    memset(h->header + len, ' ', padded - len);
    h->header_len = padded;
    free(json);
    return MOGE_OK;
}

void md_st_header_free(md_st_header *h) {
    free(h->header);
    memset(h, 0, sizeof *h);
}

moge_status md_st_begin(const char *path, const md_st_header *h, FILE **out, char *err, size_t n) {
    *out = NULL;
    FILE *f = fopen(path, "wb");
    if (!f) return set_err(err, n, MOGE_ERR_IO, "%s: %s", path, strerror(errno));
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h->header_len >> (8 * i));
    moge_status st = md_write_bytes(f, len8, 8, path, err, n);
    if (st == MOGE_OK) st = md_write_bytes(f, h->header, h->header_len, path, err, n);
    if (st != MOGE_OK) {
        fclose(f);
        return st;
    }
    *out = f;
    return MOGE_OK;
}
