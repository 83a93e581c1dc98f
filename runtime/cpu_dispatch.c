/*
 * cpu_dispatch.c — which of the cpu backend's kernel variants this processor runs (backend.h).
 *
 * The kernels (runtime/cpu/) are compiled once per variant with that variant's instruction-set
 * flags (Makefile CPU_VARIANTS), so one binary carries all of them and picks at load time, as OpenBLAS's
 * DYNAMIC_ARCH does: a binary built on one machine runs at full speed on another. This file is
 * built for the baseline and asks CPUID (and XGETBV: the operating system must save the vector
 * registers) what the processor offers; every feature a variant's compiler flags allow is
 * checked, not only the one in its name (x86-64-v3 code may use BMI2, LZCNT, MOVBE, F16C).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moge.h"
#include "runtime/backend.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define CPU_X86 1
extern const backend_ops backend_cpu_scalar, backend_cpu_avx2, backend_cpu_avxvnni, backend_cpu_avx512,
    backend_cpu_avx512vnni;
static const backend_ops *const VARIANTS[] = {&backend_cpu_scalar, &backend_cpu_avx2, &backend_cpu_avxvnni,
                                              &backend_cpu_avx512, &backend_cpu_avx512vnni};
#else
extern const backend_ops backend_cpu_generic;
static const backend_ops *const VARIANTS[] = {&backend_cpu_generic};
#endif
enum { N_VARIANTS = (int)(sizeof VARIANTS / sizeof VARIANTS[0]) };

#ifdef CPU_X86
enum { F_V3 = 1, F_AVXVNNI = 2, F_V4 = 4, F_AVX512VNNI = 8 };

static unsigned cpu_features(void) {
    unsigned a, b, c, d, f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    unsigned c1 = c;
    bool osxsave = c1 & (1u << 27);
    if (!osxsave) return 0;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    bool ymm = (xlo & 0x6) == 0x6, zmm = ymm && (xlo & 0xE0) == 0xE0;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    unsigned b7, c7, d7, a71 = 0;
    __cpuid_count(7, 0, a, b7, c7, d7);
    if (a >= 1) {
        unsigned b71, c71, d71;
        __cpuid_count(7, 1, a71, b71, c71, d71);
    }
    unsigned c81 = 0;
    if ((unsigned)__get_cpuid_max(0x80000000u, NULL) >= 0x80000001u) __get_cpuid(0x80000001u, &a, &b, &c81, &d);
    bool fma = c1 & (1u << 12), movbe = c1 & (1u << 22), popcnt = c1 & (1u << 23), avx = c1 & (1u << 28),
         f16c = c1 & (1u << 29), avx2 = b7 & (1u << 5), bmi1 = b7 & (1u << 3), bmi2 = b7 & (1u << 8),
         lzcnt = c81 & (1u << 5);
    if (ymm && avx && avx2 && fma && f16c && bmi1 && bmi2 && lzcnt && movbe && popcnt) f |= F_V3;
    if ((f & F_V3) && (a71 & (1u << 4))) f |= F_AVXVNNI;
    unsigned v4 = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31); /* F DQ CD BW VL */
    if ((f & F_V3) && zmm && (b7 & v4) == v4) f |= F_V4;
    if ((f & F_V4) && (c7 & (1u << 11))) f |= F_AVX512VNNI;
    return f;
}

static unsigned variant_needs(const char *name) {
    if (!strcmp(name, "avx2")) return F_V3;
    if (!strcmp(name, "avxvnni")) return F_V3 | F_AVXVNNI;
    if (!strcmp(name, "avx512")) return F_V4;
    if (!strcmp(name, "avx512vnni")) return F_V4 | F_AVX512VNNI;
    return 0;
}
#endif

int backend_cpu_variant_count(void) { return N_VARIANTS; }

const backend_ops *backend_cpu_variant(int i) { return i >= 0 && i < N_VARIANTS ? VARIANTS[i] : NULL; }

#ifdef CPU_X86
static unsigned features;
static pthread_once_t features_once = PTHREAD_ONCE_INIT;
static void features_init(void) { features = cpu_features(); }
#endif

bool backend_cpu_runs(const backend_ops *v) {
#ifdef CPU_X86
    pthread_once(&features_once, features_init);
    unsigned need = variant_needs(v->variant);
    return (features & need) == need;
#else
    (void)v;
    return true;
#endif
}

const backend_ops *backend_cpu_find(const char *name) {
    for (int i = 0; i < N_VARIANTS; i++)
        if (!strcmp(VARIANTS[i]->variant, name)) return VARIANTS[i];
    return NULL;
}

const backend_ops *backend_cpu_best(void) {
    const backend_ops *best = VARIANTS[0];
    for (int i = 1; i < N_VARIANTS; i++)
        if (backend_cpu_runs(VARIANTS[i])) best = VARIANTS[i];
    return best;
}

/* ------------------------------------------------------------------------------------------ */
/* public                                                                                     */

int moge_cpu_kernels_count(void) { return N_VARIANTS; }

const char *moge_cpu_kernels_name(int i) { return i >= 0 && i < N_VARIANTS ? VARIANTS[i]->variant : NULL; }

bool moge_cpu_kernels_runs(const char *name) {
    const backend_ops *v = name ? backend_cpu_find(name) : NULL;
    return v && backend_cpu_runs(v);
}

const char *moge_cpu_kernels_best(void) { return backend_cpu_best()->variant; }

void moge_cpu_kernels_list(char *out, size_t size) {
    if (!out || !size) return;
    out[0] = 0;
    for (int i = 0; i < N_VARIANTS; i++) {
        size_t len = strlen(out);
        if (backend_cpu_runs(VARIANTS[i])) snprintf(out + len, size - len, "%s%s", len ? ", " : "", VARIANTS[i]->variant);
    }
}

static void trim_copy(char *out, size_t size, const char *s, size_t len) {
    while (len && (*s == ' ' || *s == '\t')) s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\n' || s[len - 1] == '\0' || s[len - 1] == '\t')) len--;
    if (len >= size) len = size - 1;
    memcpy(out, s, len);
    out[len] = 0;
}

void moge_cpu_name(char *out, size_t size) {
    if (!out || !size) return;
    out[0] = 0;
#ifdef CPU_X86
    unsigned r[12];
    if ((unsigned)__get_cpuid_max(0x80000000u, NULL) >= 0x80000004u) {
        for (unsigned i = 0; i < 3; i++) __get_cpuid(0x80000002u + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
        char brand[49];
        memcpy(brand, r, 48);
        brand[48] = 0;
        trim_copy(out, size, brand, strlen(brand));
    }
#endif
    if (out[0]) return;
    /* elsewhere (or no brand string): the first "model name" / "Processor" line of /proc/cpuinfo */
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (colon && (!strncmp(line, "model name", 10) || !strncmp(line, "Processor", 9) || !strncmp(line, "cpu model", 9))) {
            trim_copy(out, size, colon + 1, strlen(colon + 1));
            break;
        }
    }
    if (f) fclose(f);
    if (!out[0]) trim_copy(out, size, "unknown processor", 17);
}
