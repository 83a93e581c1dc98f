/*
 * planner.c — the speculation planner: an expert-aware cost model of verification and the choice
 * of each step's tree by expected accepted tokens per expected second (planner.h).
 *
 * Cost model. Verifying n rows that touch E distinct experts (summed over the MoE layers) costs
 *     T(n, E) = T_same(n) + c · (E − E_same(n))
 * where T_same(n), E_same(n) are measured on n rows whose routing repeats (a root and n−1
 * identical siblings: every sibling routes like the first), and c, the seconds one more distinct
 * expert costs, from chains of n distinct tokens (many more experts) at the same n. Dense models
 * have T(n) = T_same(n). The calibration takes a few forwards per row count (the minimum of up
 * to three interleaved repeats), is kept in the context and cached on disk per model shape,
 * format, backend, threads and processor; measured verification times correct it online, per row
 * count (the log of measured over predicted, averaged), so it follows the machine's load and its
 * own errors.
 *
 * Batches (verify/decoder.c: s sequences' roots and k draft rows in one pass): the distinct
 * experts are those of s independent rows plus ρ × the draft rows' excess; once a plain pass of s
 * sequences was measured, a pass costs that measured time plus the calibration's extra seconds of
 * the k draft rows (scaled by what the batch's tree passes measured): additive, since what a
 * one-sequence calibration misses in a batch — every sequence's own KV cache — does not grow
 * with the draft rows.
 *
 * Distinct experts of n rows: per MoE layer, with π_e the share of the target's recent rows that
 * chose expert e, independent rows would touch D(n) = Σ_e 1 − (1 − π_e)^n experts; rows of one
 * tree share their context and route alike, so E(n) = E(1) + ρ (D(n) − E(1)) with ρ the observed
 * ratio of excess experts.
 *
 * Value. A child's acceptance rate, given its parent was accepted, is a logistic calibration of
 * the draft's conditional probability of the child (per rank among its siblings, and per depth:
 * a deep node's accepted parents mark an easier context), fitted online to every child the
 * target's walk reached in this context, starting from the draft's own probability. A node's value is
 * the product along its path, and the expected accepted tokens of a subtree are 1 (the bonus
 * token) plus the sum of its nodes' values (siblings accept exclusively).
 *
 * Choice. The nodes are taken greedily by value, a node only after its parent and its previous
 * sibling (so sampled children stay a prefix of their draws, as the rejection rule needs), and the
 * prefix with the best (1 + Σ values) / (draft + verification + other seconds) is verified (every
 * 8th step one node more). When the recent steps promise less than 5 % over plain decoding, the
 * next steps are plain (no drafting), with a probe after 2, 4, ... 256 plain steps; a plain step
 * every 40 passes keeps the one-row reference measured. The drafting depth follows the deepest
 * node chosen plus one (the full depth when a level is cheap), the width the widest rank plus one.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "runtime/context.h"
#include "base/fileio.h"
#include "verify/planner.h"
#include "verify/verify_state.h"

#define CAL_VERSION 2
#define CAL_MAX_PTS 16
#define CAL_BUDGET_S 2.5 /* no new repeat of the calibration once it has taken this long */
#define D_TAB_MAX (4 * PLAN_MAX_ROWS) /* rows of a batch of sequences the expected distinct experts cover */
#define NR 3             /* sibling ranks: first, second, later */
#define ND 3             /* depths: 1, 2, deeper (a deep node's parent path was accepted: an easier context) */

typedef struct {
    int n_pts;
    int32_t rows[CAL_MAX_PTS];
    double t_same[CAL_MAX_PTS], e_same[CAL_MAX_PTS];
    double c_exp;
    int32_t max_rows;
    char key[512];
} plan_cost;

/* What the planner learns about one drafter under one acceptance rule. */
typedef struct {
    const void *drafter;
    int32_t rule;
    int64_t used;                  /* when it was last used (least recently used is replaced) */
    /* acceptance model: logit(a) = alpha[rank][depth] + beta[rank] logit(q) */
    double alpha[NR][ND], beta[NR];
    int64_t n_obs;
    int32_t explored;              /* drafting steps so far */
    int64_t observed;              /* ... times the sequences drafted in each (a batch teaches more per step) */
    double t_level;                /* draft seconds per level */
    double tok_avg, time_avg, rel; /* drafting steps: moving averages of expected tokens and seconds;
                                      their ratio over plain decoding's rate */
    int32_t depth, width, skip_left, wait; /* levels and children per node to draft next */
} drafter_state;

#define DRAFTER_SLOTS 4

struct planner {
    moge_context *ctx;
    plan_cost cost;            /* calibrated once per context (or read from the cache) */
    char machine_key[512];     /* the model, format, backend, threads and processor the cost is of */
    int32_t max_rows, n_moe, n_expert, k;
    double *hits; /* (n_moe, n_expert) decayed rows that chose each expert */
    double rows;  /* decayed rows counted */
    double rho;
    double d_tab[D_TAB_MAX + 1]; /* D(n) summed over layers */
    int tab_age;
    double log_scale; int n_scale; /* measured over predicted verification time, log, all passes */
    /* batches (s > 1 sequences): the measured seconds of a plain pass of s sequences (it includes
     * reading every sequence's KV cache, which the calibration on one sequence's rows does not
     * see), and the log scale of the draft rows' measured over calibrated extra seconds */
    double base_t[D_TAB_MAX + 1];
    int32_t base_n[D_TAB_MAX + 1];
    double marg_log;
    double pt_log[CAL_MAX_PTS];    /* the same per calibration point (passes of about its rows) */
    int pt_n[CAL_MAX_PTS];
    double t_other;
    int32_t since_plain;           /* passes since the last one-row pass */
    bool chosen, after_spec;
    bool fixed; /* MOGE_PLAN_COST: a given cost model, nothing measured */
    drafter_state ds[DRAFTER_SLOTS], *d; /* what it learned per drafter and rule; d: this generation's */
    int64_t uses;
    double pred_tok, pred_time, plain_time;
    int64_t steps;
};

/* ------------------------------------------------------------------------------------------ */
/* Cost model: calibration, cache                                                             */
/* ------------------------------------------------------------------------------------------ */

static double interp(const plan_cost *c, const double *y, double n) {
    if (c->n_pts == 1 || n <= c->rows[0]) return y[0];
    int i = 1;
    while (i < c->n_pts - 1 && n > c->rows[i]) i++;
    double x0 = c->rows[i - 1], x1 = c->rows[i];
    return y[i - 1] + (y[i] - y[i - 1]) * (n - x0) / (x1 - x0);
}

static double cost_raw(const plan_cost *c, double n, double e) {
    double t = interp(c, c->t_same, n) + c->c_exp * (e - interp(c, c->e_same, n));
    double floor = 0.5 * c->t_same[0];
    return t > floor ? t : floor;
}

static double distinct_sum(const moge_context *ctx) {
    double e = 0;
    for (int32_t l = 0; l < moge_context_n_moe_layers(ctx); l++) {
        moge_moe_stats ms;
        if (moge_moe_stats_get(ctx, l, false, &ms) == MOGE_OK) e += ms.distinct_experts;
    }
    return e;
}

static void cost_key(const moge_context *ctx, char *buf, size_t n) {
    const moge_model *m = ctx->model;
    const model_config *c = &m->cfg;
    moge_model_info in;
    moge_model_get_info(m, &in);
    char cpu[128];
    moge_cpu_name(cpu, sizeof cpu);
    snprintf(buf, n, "v%d %s L%d D%d H%d/%d hd%d ff%d E%d/%d G%d ffe%d ffs%d V%d dtype=%s quant=%s bytes=%lld backend=%s kernels=%s threads=%d devices=%d cpu=%s",
             CAL_VERSION, c->architecture, c->n_layer, c->n_embd, c->n_head, c->n_head_kv, c->head_dim, c->n_ff, c->n_expert,
             c->n_expert_used, c->n_group, c->n_ff_expert, c->n_ff_shared, c->n_vocab, in.dtype ? in.dtype : "?",
             in.quant ? in.quant : "?", (long long)in.weight_bytes, m->ops ? m->ops->name : "?",
             m->ops && m->ops->variant ? m->ops->variant : "-", ctx->n_threads, ctx->n_devices, cpu);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* The cache file's path (false when no cache directory is known). mkdirs: create its folders
 * (false when that fails: the planner then works without the cache). */
static bool cache_path(const char *key, char *buf, size_t n, bool mkdirs) {
    char dir[4096], err[8];
    if (file_cache_root(NULL, dir, sizeof dir, err, sizeof err) != MOGE_OK) return false;
    int w = snprintf(buf, n, "%s/calib", dir);
    if (w < 0 || (size_t)w >= n || (mkdirs && file_make_dirs(buf, err, sizeof err) != MOGE_OK)) return false;
    w = snprintf(buf, n, "%s/calib/%016llx.txt", dir, (unsigned long long)fnv1a(key));
    return w > 0 && (size_t)w < n;
}

static bool cost_load(plan_cost *c, const char *key, int32_t max_rows) {
    char path[4200];
    if (!cache_path(key, path, sizeof path, false)) return false;
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[1024];
    bool ok = false;
    memset(c, 0, sizeof *c);
    if (fgets(line, sizeof line, f) && !strcmp(line, "moge-calibration\n") && fgets(line, sizeof line, f) &&
        !strncmp(line, "key ", 4)) {
        line[strcspn(line, "\n")] = 0;
        if (!strcmp(line + 4, key) && fgets(line, sizeof line, f) && sscanf(line, "c_exp %lf", &c->c_exp) == 1) {
            while (c->n_pts < CAL_MAX_PTS && fgets(line, sizeof line, f)) {
                int r;
                double t, e;
                if (sscanf(line, "%d %lf %lf", &r, &t, &e) != 3 || r < 1 || !(t > 0) || !(e >= 0)) break;
                if (c->n_pts > 0 && r <= c->rows[c->n_pts - 1]) break;
                c->rows[c->n_pts] = r, c->t_same[c->n_pts] = t, c->e_same[c->n_pts] = e;
                c->n_pts++;
            }
            ok = c->n_pts > 0 && c->rows[0] == 1 && c->rows[c->n_pts - 1] >= max_rows && c->c_exp >= 0 && isfinite(c->c_exp);
        }
    }
    fclose(f);
    if (ok) {
        c->max_rows = c->rows[c->n_pts - 1];
        snprintf(c->key, sizeof c->key, "%s", key);
    }
    return ok;
}

static void cost_save(const plan_cost *c) {
    char path[4200], tmp[4300];
    if (!cache_path(c->key, path, sizeof path, true)) return;
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    fprintf(f, "moge-calibration\nkey %s\nc_exp %.9g\n", c->key, c->c_exp);
    for (int i = 0; i < c->n_pts; i++) fprintf(f, "%d %.9g %.9g\n", c->rows[i], c->t_same[i], c->e_same[i]);
    bool ok = fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) remove(tmp);
}

/* One timed forward of n rows: "same" = a root and n-1 identical children, else a causal chain of
 * distinct tokens. Writes the seconds and the distinct experts; the cache is left as it was. */
static moge_status timed_pass(moge_context *ctx, int32_t seq, int32_t n, bool same, const int32_t *toks, int32_t *tbuf,
                              int32_t *pbuf, double *secs, double *e) {
    int32_t *sbuf = pbuf + n;
    for (int32_t i = 0; i < n; i++) {
        tbuf[i] = same ? (i == 0 ? toks[0] : toks[1]) : toks[i];
        pbuf[i] = i == 0 ? -1 : same ? 0 : i - 1;
        sbuf[i] = seq;
    }
    moge_batch b = {.n = n, .tokens = tbuf, .parent = pbuf, .seq = sbuf};
    const float *lg;
    double t0 = clock_now();
    moge_status st = moge_forward(ctx, &b, &lg);
    *secs = clock_now() - t0;
    *e = distinct_sum(ctx);
    return st;
}

static moge_status calibrate(moge_context *ctx, int32_t seq, int32_t max_rows, const int32_t *history, int32_t n_history,
                             plan_cost *c) {
    static const int32_t grid[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128};
    int32_t room = ctx->n_ctx - ctx->seq[seq].n_past;
    if (room > ctx->seq_rows) room = ctx->seq_rows;
    if (room > ctx->n_batch) room = ctx->n_batch;
    if (max_rows > room) max_rows = room;
    if (max_rows < 1) return MOGE_ERR_CONTEXT_FULL;
    c->n_pts = 0;
    for (size_t i = 0; i < sizeof grid / sizeof grid[0] && grid[i] < max_rows && c->n_pts < CAL_MAX_PTS - 1; i++)
        c->rows[c->n_pts++] = grid[i];
    c->rows[c->n_pts++] = max_rows;
    c->max_rows = max_rows;
    bool moe = moge_context_n_moe_layers(ctx) > 0;
    int32_t V = ctx->model->cfg.n_vocab;
    int32_t *toks = malloc((size_t)max_rows * 4 * sizeof(int32_t));
    if (!toks) return MOGE_ERR_NOMEM;
    int32_t *tbuf = toks + max_rows, *pbuf = tbuf + max_rows;
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int32_t i = 0; i < max_rows; i++) { /* the history's tokens, then pseudo-random ones */
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = i < n_history ? history[n_history - 1 - i] : (int32_t)((s >> 33) % (uint64_t)V);
    }
    double t_dist[CAL_MAX_PTS], e_dist[CAL_MAX_PTS];
    for (int i = 0; i < c->n_pts; i++) c->t_same[i] = t_dist[i] = INFINITY;
    double secs, e, t0 = clock_now();
    moge_status st = timed_pass(ctx, seq, max_rows, false, toks, tbuf, pbuf, &secs, &e); /* warm-up */
    for (int rep = 0; rep < 3 && st == MOGE_OK; rep++) {
        for (int i = 0; i < c->n_pts && st == MOGE_OK; i++) {
            for (int kind = 0; kind < (moe ? 2 : 1) && st == MOGE_OK; kind++) {
                bool same = moe && kind == 0;
                st = timed_pass(ctx, seq, c->rows[i], same, toks, tbuf, pbuf, &secs, &e);
                double *t = same || !moe ? &c->t_same[i] : &t_dist[i];
                if (secs < *t) {
                    *t = secs;
                    if (same || !moe) c->e_same[i] = e;
                    else e_dist[i] = e;
                }
            }
        }
        if (clock_now() - t0 > CAL_BUDGET_S) break;
    }
    free(toks);
    if (st != MOGE_OK) return st;
    c->c_exp = 0;
    if (moe) { /* least squares through the origin of Δt on ΔE over the row counts */
        double sxy = 0, sxx = 0;
        for (int i = 0; i < c->n_pts; i++) {
            double dx = e_dist[i] - c->e_same[i], dy = t_dist[i] - c->t_same[i];
            if (c->rows[i] < 2 || dx <= 0) continue;
            sxy += dx * dy, sxx += dx * dx;
        }
        if (sxx > 0 && sxy > 0) c->c_exp = sxy / sxx;
    }
    /* more rows never cost less: where a point costs more than a larger one, a burst of other work
     * slowed it (noise only ever adds time), so it takes the larger one's time */
    for (int i = c->n_pts - 2; i >= 0; i--)
        if (c->t_same[i] > c->t_same[i + 1]) c->t_same[i] = c->t_same[i + 1];
    return MOGE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Planner                                                                                    */
/* ------------------------------------------------------------------------------------------ */

void planner_free(planner *p) {
    if (!p) return;
    free(p->hits);
    free(p);
}

static void refresh_distinct(planner *p);

/* A fresh state for a drafter (or acceptance rule) the planner has not seen. */
static void new_drafter_state(drafter_state *d, const void *drafter, int32_t rule) {
    memset(d, 0, sizeof *d);
    d->drafter = drafter;
    d->rule = rule;
    for (int r = 0; r < NR; r++) d->beta[r] = 1; /* a = q to begin with */
    d->depth = MOGE_MAX_DEPTH;
    d->width = 1 << 20;
    d->wait = 2;
}

moge_status planner_start(moge_context *ctx, int32_t seq, int32_t max_rows, const void *drafter, int32_t rule,
                          const int32_t *history, int32_t n_history, planner **out) {
    *out = NULL;
    if (max_rows > PLAN_MAX_ROWS) max_rows = PLAN_MAX_ROWS;
    if (max_rows > ctx->n_ctx - ctx->seq[seq].n_past) max_rows = ctx->n_ctx - ctx->seq[seq].n_past; /* the calibration's room */
    if (max_rows > ctx->seq_rows) max_rows = ctx->seq_rows;
    if (max_rows < 1) return MOGE_ERR_CONTEXT_FULL;
    verify_state *vs = verify_state_get(ctx);
    if (!vs) return MOGE_ERR_NOMEM;
    planner *p = vs->planner;
    if (!p) {
        if (!(p = calloc(1, sizeof *p))) return MOGE_ERR_NOMEM;
        p->ctx = ctx;
        p->n_moe = moge_context_n_moe_layers(ctx);
        p->n_expert = ctx->model->cfg.n_expert;
        p->k = ctx->model->cfg.n_expert_used;
        if (p->n_moe > 0 && !(p->hits = calloc((size_t)p->n_moe * p->n_expert, sizeof(double)))) {
            free(p);
            return MOGE_ERR_NOMEM;
        }
        p->rho = 0.8;
        p->tab_age = 1 << 30;
        cost_key(ctx, p->machine_key, sizeof p->machine_key); /* once: it asks CPUID */
        vs->planner = p;
    }
    char fixed_key[96];
    double fa, fb, fc = 0;
    const char *fixed = getenv("MOGE_PLAN_COST");
    bool is_fixed = fixed && sscanf(fixed, "%lf,%lf,%lf", &fa, &fb, &fc) >= 2 && fa > 0 && fb >= 0 && fc >= 0;
    if (is_fixed) snprintf(fixed_key, sizeof fixed_key, "fixed %.9g %.9g %.9g", fa, fb, fc);
    const char *key = is_fixed ? fixed_key : p->machine_key;
    const char *recal = getenv("MOGE_RECALIBRATE");
    bool force = recal && *recal && strcmp(recal, "0") != 0;
    plan_cost *c = &p->cost;
    if (strcmp(c->key, key) != 0 || c->max_rows < max_rows) {
        if (is_fixed) { /* T(n, E) = a + b n + c E: no calibration, no scale, no draft time */
            memset(c, 0, sizeof *c);
            c->n_pts = 2;
            c->rows[0] = 1, c->rows[1] = PLAN_MAX_ROWS;
            c->t_same[0] = fa + fb, c->t_same[1] = fa + fb * PLAN_MAX_ROWS;
            c->c_exp = fc;
            c->max_rows = PLAN_MAX_ROWS;
        } else if (force || !cost_load(c, key, max_rows)) {
            moge_status st = calibrate(ctx, seq, max_rows, history, n_history, c);
            if (st != MOGE_OK) {
                c->key[0] = 0;
                return st;
            }
            snprintf(c->key, sizeof c->key, "%s", key);
            if (c->max_rows >= max_rows) cost_save(c);
        }
        snprintf(c->key, sizeof c->key, "%s", key); /* the fixed cost's (the others have it already) */
        p->n_scale = 0;
        p->log_scale = 0;
        memset(p->pt_n, 0, sizeof p->pt_n);
        memset(p->base_n, 0, sizeof p->base_n);
        p->marg_log = 0;
    }
    p->fixed = is_fixed;
    p->d = NULL;
    for (int i = 0; i < DRAFTER_SLOTS && !p->d; i++)
        if (p->ds[i].used && p->ds[i].drafter == drafter && p->ds[i].rule == rule) p->d = &p->ds[i];
    if (!p->d) {
        p->d = &p->ds[0];
        for (int i = 1; i < DRAFTER_SLOTS; i++)
            if (p->ds[i].used < p->d->used) p->d = &p->ds[i];
        new_drafter_state(p->d, drafter, rule);
    }
    p->d->used = ++p->uses;
    p->max_rows = max_rows < c->max_rows ? max_rows : c->max_rows;
    p->chosen = p->after_spec = false;
    p->pred_tok = p->pred_time = p->plain_time = 0;
    p->steps = 0;
    if (p->tab_age > 16) refresh_distinct(p);
    *out = p;
    return MOGE_OK;
}

/* D(n) = Σ_layers Σ_e 1 − (1 − π_e)^n for n = 1..D_TAB_MAX, from the routing seen so far. */
static void refresh_distinct(planner *p) {
    memset(p->d_tab, 0, sizeof p->d_tab);
    if (p->n_moe == 0) return;
    for (int32_t l = 0; l < p->n_moe; l++)
        for (int32_t e = 0; e < p->n_expert; e++) {
            double pi = p->rows > 0 ? p->hits[(int64_t)l * p->n_expert + e] / p->rows : (double)p->k / p->n_expert;
            if (pi > 1) pi = 1;
            double miss = 1;
            for (int32_t n = 1; n <= D_TAB_MAX; n++) {
                miss *= 1 - pi;
                p->d_tab[n] += 1 - miss;
            }
        }
    p->tab_age = 0;
}

static double expected_distinct(const planner *p, int32_t n) {
    if (p->n_moe == 0) return 0;
    if (n > p->max_rows) n = p->max_rows;
    double e1 = (double)p->n_moe * p->k;
    return e1 + p->rho * (p->d_tab[n] - e1);
}

static double d_tab_at(const planner *p, int32_t n) { return p->d_tab[n < D_TAB_MAX ? n : D_TAB_MAX]; }

/* Distinct experts of a pass of s sequences' roots and k draft rows among them: the roots are
 * independent rows (other texts), the draft rows route like their roots (ratio ρ). One sequence:
 * expected_distinct. */
static double expected_distinct_batch(const planner *p, int32_t s, int32_t k) {
    if (s <= 1) return expected_distinct(p, 1 + k);
    if (p->n_moe == 0) return 0;
    double roots = d_tab_at(p, s);
    return roots + p->rho * (d_tab_at(p, s + k) - roots);
}

/* The log correction of the calibration at calibration point i: its own passes' once it has some,
 * else the nearest point's that has some, else that of all passes (none yet: 0). */
static double point_log(const planner *p, int i) {
    if (p->pt_n[i]) return p->pt_log[i];
    int best = -1; /* else the nearest point (in rows) that has passes: the error varies slowly with n */
    for (int j = 0; j < p->cost.n_pts; j++)
        if (p->pt_n[j] && (best < 0 || abs(p->cost.rows[j] - p->cost.rows[i]) < abs(p->cost.rows[best] - p->cost.rows[i]))) best = j;
    return best >= 0 ? p->pt_log[best] : p->n_scale ? p->log_scale : 0;
}

/* Predicted seconds of verifying n rows touching e distinct experts: the calibration times the
 * measured correction, which follows the machine's load overall and the calibration's error at
 * each row count (beyond the calibrated rows, the last point's, and the calibration extrapolated
 * linearly). */
static double verify_cost_e(const planner *p, int32_t n, double e) {
    const plan_cost *c = &p->cost;
    int i = 1;
    while (i < c->n_pts - 1 && n > c->rows[i]) i++;
    double lg;
    if (c->n_pts == 1 || n <= c->rows[0]) lg = point_log(p, 0);
    else if (n >= c->rows[c->n_pts - 1]) lg = point_log(p, c->n_pts - 1);
    else {
        double w = (double)(n - c->rows[i - 1]) / (c->rows[i] - c->rows[i - 1]);
        lg = (1 - w) * point_log(p, i - 1) + w * point_log(p, i);
    }
    return exp(lg) * cost_raw(c, n, e);
}

static double verify_cost(const planner *p, int32_t n) { return verify_cost_e(p, n, expected_distinct(p, n)); }

/* The measured plain pass of s > 1 sequences: its own average, else the nearest measured one's
 * scaled by the calibration's ratio; -1 when no plain batch pass was measured. */
static double batch_base(const planner *p, int32_t s) {
    if (s > D_TAB_MAX) return -1;
    if (p->base_n[s]) return p->base_t[s];
    int32_t best = -1;
    for (int32_t t = 2; t <= D_TAB_MAX; t++)
        if (p->base_n[t] && (best < 0 || abs(t - s) < abs(best - s))) best = t;
    if (best < 0) return -1;
    double rs = cost_raw(&p->cost, s, expected_distinct_batch(p, s, 0)), rb = cost_raw(&p->cost, best, expected_distinct_batch(p, best, 0));
    return rb > 0 ? p->base_t[best] * rs / rb : -1;
}

/* A pass of s sequences' roots and k draft rows. One sequence: verify_cost. More, once a plain pass
 * of the batch was measured: that pass's seconds plus the draft rows' extra seconds of the
 * calibration (their measured scale) — additive, since what the calibration misses in a batch
 * (every sequence's own KV cache) does not grow with the draft rows; before: the calibration with
 * its measured corrections. */
static double verify_cost_batch(const planner *p, int32_t s, int32_t k) {
    if (s <= 1) return verify_cost(p, 1 + k);
    double e0 = expected_distinct_batch(p, s, 0), base = batch_base(p, s);
    if (base < 0) return verify_cost_e(p, s + k, expected_distinct_batch(p, s, k));
    if (k == 0) return base;
    double extra = cost_raw(&p->cost, s + k, expected_distinct_batch(p, s, k)) - cost_raw(&p->cost, s, e0);
    return base + exp(p->marg_log) * (extra > 0 ? extra : 0);
}

/* Learns a batch pass of s sequences and n rows (verify_cost_batch's base and draft-row scale). */
static void observe_batch_cost(planner *p, int32_t s, int32_t n, double e_obs, double verify_s) {
    if (s <= 1 || s > D_TAB_MAX || verify_s <= 0) return;
    if (n == s) { /* a plain pass: its sequences' base, averaged */
        double *b = &p->base_t[s];
        *b = p->base_n[s] ? 0.8 * *b + 0.2 * verify_s : verify_s;
        if (p->base_n[s] < (1 << 30)) p->base_n[s]++;
        return;
    }
    double base = batch_base(p, s);
    double extra = cost_raw(&p->cost, n, e_obs) - cost_raw(&p->cost, s, expected_distinct_batch(p, s, 0));
    if (base <= 0 || extra <= 0) return;
    double obs = verify_s - base;
    if (obs < 0.05 * extra) obs = 0.05 * extra; /* noise: a tree pass measured at or below the plain one */
    double d = log(obs / extra) - p->marg_log;
    if (d > 0.7) d = 0.7;
    if (d < -0.7) d = -0.7;
    p->marg_log += 0.15 * d;
}

static double logit_q(double q) {
    if (q < 0.005) q = 0.005;
    if (q > 0.995) q = 0.995;
    return log(q / (1 - q));
}

static int rank_class(int rank) { return rank < NR ? rank : NR - 1; }
static int depth_class(int depth) { return depth <= 1 ? 0 : depth > ND ? ND - 1 : depth - 1; }

/* The acceptance rate of a child whose conditional draft probability is q, at its rank among its
 * siblings and its depth: a logistic calibration of q, fitted online to every child the walk
 * reached (one model shares what few observations a generation has across all q). */
static double accept_rate(const planner *p, double q, int rank, int depth) {
    int r = rank_class(rank), d = depth_class(depth);
    double z = p->d->alpha[r][d] + p->d->beta[r] * logit_q(q);
    return 1 / (1 + exp(-z));
}

/* One stochastic-gradient step of the log loss on an observation (accepted or not). */
static void learn_accept(planner *p, double q, int rank, int depth, bool accepted) {
    int r = rank_class(rank), d = depth_class(depth);
    double x = logit_q(q), a = accept_rate(p, q, rank, depth), g = (accepted ? 1.0 : 0.0) - a;
    double lr = 0.3 / (1 + p->d->n_obs / 200.0) + 0.03; /* quick at first, then steadier */
    p->d->alpha[r][d] += lr * g;
    p->d->beta[r] += 0.2 * lr * g * x;
    if (p->d->beta[r] < 0.2) p->d->beta[r] = 0.2; /* a more probable draft token stays more acceptable */
    if (p->d->beta[r] > 3) p->d->beta[r] = 3;
    p->d->n_obs++;
}

static double child_q(const moge_tree *t, int32_t i) {
    double q = exp((double)t->logp[i] - (double)t->logp[t->parent[i]]);
    return q > 1 ? 1 : q;
}

/* first_child / next_sib links of t's first n nodes; returns each node's rank among its siblings
 * in `rank` when not NULL. */
static void link_tree(const moge_tree *t, int32_t n, int32_t *first_child, int32_t *next_sib, int32_t *rank) {
    int32_t last[PLAN_MAX_ROWS];
    for (int32_t i = 0; i < n; i++) first_child[i] = next_sib[i] = last[i] = -1;
    for (int32_t i = 1; i < n; i++) {
        int32_t par = t->parent[i];
        if (last[par] < 0) {
            first_child[par] = i;
            if (rank) rank[i] = 0;
        } else {
            next_sib[last[par]] = i;
            if (rank) rank[i] = rank[last[par]] + 1;
        }
        last[par] = i;
    }
}

int32_t planner_depth(planner *p, int32_t draft_max, int32_t *width) {
    p->chosen = false;
    *width = p->d->width;
    /* every so often a plain step, so that the one-row pass, the reference of every decision, is
     * measured too (the calibration's other points do not tell its error) */
    if (p->since_plain >= 40 && !p->fixed) return 0;
    if (p->d->skip_left > 0) {
        p->d->skip_left--;
        return 0;
    }
    int32_t d = p->d->depth;
    /* levels that cost under 5 % of a one-row pass are drafted anyway (a memory-bound target with
     * a small draft): only the verification needs choosing there */
    if (p->d->t_level > 0) {
        double cheap = 0.05 * verify_cost(p, 1) / p->d->t_level;
        if (cheap > d) d = cheap > MOGE_MAX_DEPTH ? MOGE_MAX_DEPTH : (int32_t)cheap;
    }
    if (d > draft_max) d = draft_max;
    return d < 1 ? 1 : d;
}

/* Scratch of a choice over a forest of nt trees (a batch of sequences, or one), nodes numbered
 * globally: tree t's node i is base[t] + i. */
typedef struct {
    int32_t n_all, *base, *n, *rank, *first_child, *next_sib, *order, *new_id;
    double *val, *gain;
    uint8_t *sel, *cand;
    void *mem;
} forest;

static bool forest_init(forest *f, int32_t nt, const moge_tree *const *trees, int32_t cap) {
    f->n_all = 0;
    int64_t all = 0;
    for (int32_t t = 0; t < nt; t++) all += trees[t]->n < cap ? trees[t]->n : cap;
    size_t ints = (size_t)(2 * nt + 6 * all), doubles = (size_t)(2 * all + 1);
    f->mem = malloc(ints * sizeof(int32_t) + doubles * sizeof(double) + (size_t)(2 * all));
    if (!f->mem) return false;
    f->val = f->mem;
    f->gain = f->val + all;
    f->base = (int32_t *)(f->gain + all + 1);
    f->n = f->base + nt;
    f->rank = f->n + nt;
    f->first_child = f->rank + all;
    f->next_sib = f->first_child + all;
    f->order = f->next_sib + all;
    f->new_id = f->order + all;
    f->sel = (uint8_t *)(f->new_id + all);
    f->cand = f->sel + all;
    for (int32_t t = 0; t < nt; t++) {
        f->n[t] = trees[t]->n < cap ? trees[t]->n : cap;
        f->base[t] = f->n_all;
        f->n_all += f->n[t];
    }
    return true;
}

/* Chooses the nodes of nt drafted trees verified together in one pass of at most row_cap rows
 * (the roots always) and writes them to outs[t] / maps[t]; see the file comment. One tree: the
 * one-sequence planner (the same arithmetic as always); more: the gains are the sequences' summed
 * and the cost that of the whole pass. */
static void choose_forest(planner *p, int32_t nt, const moge_tree *const *trees, int32_t levels, double draft_s,
                          moge_tree *const *outs, int32_t *const *maps, int32_t row_cap) {
    if (levels < 1) levels = 1;
    if (p->fixed) draft_s = 0;
    if (p->d->t_level <= 0 || p->after_spec) { /* steady steps only: a probe also catches the draft up */
        double tl = draft_s / levels;
        p->d->t_level = p->d->t_level > 0 ? 0.8 * p->d->t_level + 0.2 * tl : tl;
    }
    if (++p->tab_age > 16) refresh_distinct(p);
    forest f;
    int32_t cap = nt == 1 ? p->max_rows : PLAN_MAX_ROWS;
    bool ok = forest_init(&f, nt, trees, cap);
    int32_t m = 0;
    if (ok) {
        memset(f.sel, 0, (size_t)f.n_all);
        memset(f.cand, 0, (size_t)f.n_all);
        for (int32_t t = 0; t < nt; t++) {
            const moge_tree *tree = trees[t];
            int32_t b0 = f.base[t], n = f.n[t];
            int32_t *fc = f.first_child + b0, *ns = f.next_sib + b0, *rank = f.rank + b0;
            link_tree(tree, n, fc, ns, rank);
            f.val[b0] = 1;
            for (int32_t i = 1; i < n; i++) f.val[b0 + i] = f.val[b0 + tree->parent[i]] * accept_rate(p, child_q(tree, i), rank[i], tree->depth[i]);
            f.sel[b0] = 1;
            if (n > 1 && fc[0] > 0) f.cand[b0 + fc[0]] = 1;
        }
        /* greedy by value; a node becomes a candidate once its parent and previous sibling are in */
        f.gain[0] = nt;
        int32_t most = row_cap - nt;
        while (m < most) {
            int32_t best = -1;
            for (int32_t i = 0; i < f.n_all; i++)
                if (f.cand[i] && (best < 0 || f.val[i] > f.val[best])) best = i;
            if (best < 0) break;
            int32_t t = 0;
            while (t + 1 < nt && f.base[t + 1] <= best) t++;
            f.cand[best] = 0;
            f.sel[best] = 1;
            f.order[m++] = best;
            f.gain[m] = f.gain[m - 1] + f.val[best];
            if (f.first_child[best] > 0) f.cand[f.base[t] + f.first_child[best]] = 1;
            if (f.next_sib[best] > 0) f.cand[f.base[t] + f.next_sib[best]] = 1;
        }
    }
    double t_draft = levels * p->d->t_level, t_plain = verify_cost_batch(p, nt, 0) + p->t_other;
    int32_t best_m = 0;
    double best_r = -1, best_t = t_draft + t_plain;
    for (int32_t k = 0; ok && k <= m; k++) {
        double t = t_draft + verify_cost_batch(p, nt, k) + p->t_other, r = f.gain[k] / t;
        if (r > best_r) best_r = r, best_m = k, best_t = t;
    }
    /* every 8th drafting step verifies one node more than the model says: that measures the cost
     * of a larger pass and the acceptance of less likely nodes, which the model cannot learn from
     * passes it never runs (the predictions below stay those of the model's choice) */
    int32_t take = best_m;
    if (!p->fixed && best_m < m && p->d->explored % 8 == 7) take = best_m + 1;
    /* the chosen nodes in tree order */
    int32_t deepest = 0, widest = 0;
    if (ok) {
        memset(f.sel, 0, (size_t)f.n_all);
        for (int32_t t = 0; t < nt; t++) f.sel[f.base[t]] = 1;
        for (int32_t k = 0; k < take; k++) {
            int32_t g = f.order[k], t = 0;
            while (t + 1 < nt && f.base[t + 1] <= g) t++;
            f.sel[g] = 1;
            if (trees[t]->depth[g - f.base[t]] > deepest) deepest = trees[t]->depth[g - f.base[t]];
            if (f.rank[g] + 1 > widest) widest = f.rank[g] + 1;
        }
    }
    for (int32_t t = 0; t < nt; t++) {
        const moge_tree *tree = trees[t];
        moge_tree *out = outs[t];
        int32_t *map = maps[t], *new_id = ok ? f.new_id + f.base[t] : NULL;
        moge_tree_reset(out, tree->token[0]);
        out->sampled = tree->sampled;
        out->without_replacement = tree->without_replacement;
        out->q[0] = tree->q ? tree->q[0] : NULL;
        map[0] = 0;
        if (!ok) continue; /* out of memory: a plain step */
        new_id[0] = 0;
        for (int32_t i = 1; i < f.n[t]; i++) {
            if (!f.sel[f.base[t] + i]) continue;
            int32_t id = moge_tree_add(out, new_id[tree->parent[i]], tree->token[i], tree->logp[i]);
            if (id < 0) break;
            out->q[id] = tree->q ? tree->q[i] : NULL;
            new_id[i] = id;
            map[id] = i;
        }
    }
    double gain = ok ? f.gain[best_m] : nt;
    free(ok ? f.mem : NULL);
    /* next step: as deep as this one used, plus one; plain steps for a while when speculating
     * loses against plain decoding even with the best subtree */
    if (take > 0) p->d->depth = deepest + 1, p->d->width = widest + 1;
    /* expected tokens (per sequence) over expected seconds of the recent drafting steps (a step
     * that found nothing worth verifying counts its drafting), against plain decoding */
    p->d->tok_avg = p->d->time_avg > 0 ? 0.85 * p->d->tok_avg + 0.15 * gain / nt : gain / nt;
    /* a step after plain ones also paid for the drafter catching up: the price of switching,
     * which counts against speculating (else the planner flips between the two near break-even) */
    double step_t = best_t;
    if (!p->after_spec && draft_s > t_draft) step_t += draft_s - t_draft;
    p->d->time_avg = p->d->time_avg > 0 ? 0.85 * p->d->time_avg + 0.15 * step_t : step_t;
    p->d->rel = p->d->tok_avg / p->d->time_avg * t_plain;
    /* after a few steps that teach the acceptance rates (a step of a batch teaches as many as it
     * has sequences); speculation must promise 5 % over plain decoding, the size of the model's
     * errors near break-even (measured on the demo pair) */
    p->d->explored++;
    p->d->observed += nt;
    if (p->d->observed > 16 && p->d->rel < 1.05) {
        p->d->skip_left = p->d->wait;
        p->d->wait = p->d->wait < 256 ? 2 * p->d->wait : 256;
    } else {
        p->d->wait = 2;
    }
    p->chosen = true;
    p->pred_tok += gain / nt;
    p->pred_time += best_t;
    p->plain_time += t_plain;
    p->steps++;
}

void planner_choose(planner *p, const moge_tree *tree, int32_t levels, double draft_s, moge_tree *out, int32_t *map) {
    choose_forest(p, 1, &tree, levels, draft_s, &out, &map, PLAN_MAX_ROWS + 1);
}

void planner_choose_batch(planner *p, int32_t n, const moge_tree *const *trees, int32_t levels, double draft_s,
                          moge_tree *const *outs, int32_t *const *maps, int32_t max_rows) {
    choose_forest(p, n, trees, levels, draft_s, outs, maps, max_rows);
}

/* What a pass teaches besides acceptance: the cost model's scale (n rows of s sequences), the
 * draft/other time, the routing's expert shares and the ratio of excess experts. */
static void observe_pass(planner *p, int32_t s, int32_t n, double verify_s, double other_s) {
    moge_context *ctx = p->ctx;
    double e_obs = distinct_sum(ctx);
    if (!p->fixed) observe_batch_cost(p, s, n, e_obs, verify_s);
    /* the scale of the cost model: measured over predicted, averaged in log space */
    double raw = cost_raw(&p->cost, n, e_obs);
    if (p->fixed) verify_s = other_s = 0;
    if (raw > 0 && verify_s > 0) {
        double lr = log(verify_s / raw);
        if (p->n_scale == 0) p->log_scale = lr;
        else {
            double d = lr - p->log_scale;
            if (d > 0.7) d = 0.7; /* one slow pass (a page fault, a busy neighbour) moves it little */
            if (d < -0.7) d = -0.7;
            p->log_scale += 0.1 * d;
        }
        p->n_scale++;
        const plan_cost *c = &p->cost;
        int j = 0; /* the nearest calibration point */
        for (int i = 1; i < c->n_pts; i++)
            if (abs(c->rows[i] - n) < abs(c->rows[j] - n)) j = i;
        if (!p->pt_n[j]) p->pt_log[j] = p->log_scale;
        double d = lr - p->pt_log[j];
        if (d > 0.7) d = 0.7;
        if (d < -0.7) d = -0.7;
        p->pt_log[j] += 0.15 * d;
        p->pt_n[j]++;
    }
    p->t_other = p->t_other > 0 ? 0.9 * p->t_other + 0.1 * other_s : other_s;
    if (!p->chosen) { /* a plain step */
        double t_plain = verify_cost_batch(p, s, 0) + p->t_other;
        p->pred_tok += 1, p->pred_time += t_plain, p->plain_time += t_plain;
        p->steps++;
    }
    p->after_spec = p->chosen;
    p->since_plain = n == s ? 0 : p->since_plain + 1;
    /* routing: decayed expert shares; the ratio of excess distinct experts */
    if (p->n_moe > 0) {
        int32_t k = n - s;
        if (k > 0 && (s > 1 || n <= p->max_rows) && s + k <= D_TAB_MAX && p->tab_age < (1 << 30)) {
            double base = s > 1 ? d_tab_at(p, s) : (double)p->n_moe * p->k, pred = d_tab_at(p, n) - base;
            if (pred > 0.5) {
                double r = (e_obs - base) / pred;
                if (r < 0) r = 0;
                if (r > 1.5) r = 1.5;
                p->rho = 0.9 * p->rho + 0.1 * r;
            }
        }
        for (int32_t l = 0; l < p->n_moe; l++) {
            moge_moe_stats ms;
            if (moge_moe_stats_get(ctx, l, false, &ms) != MOGE_OK) continue;
            double *h = p->hits + (int64_t)l * p->n_expert;
            for (int32_t e = 0; e < p->n_expert; e++) h[e] = 0.99 * h[e] + (double)ms.expert_hits[e];
        }
        p->rows = 0.99 * p->rows + n;
    }
}

/* Acceptance: every child of every accepted node was tried. */
static void observe_accept(planner *p, const moge_tree *tree, const int32_t *path, int32_t n_path) {
    int32_t n = tree->n;
    if (n <= 1) return;
    int32_t fc[PLAN_MAX_ROWS], ns[PLAN_MAX_ROWS], rank[PLAN_MAX_ROWS];
    int32_t nn = n < PLAN_MAX_ROWS ? n : PLAN_MAX_ROWS;
    link_tree(tree, nn, fc, ns, rank);
    for (int32_t i = 0; i < n_path; i++) {
        int32_t u = path[i], next = i + 1 < n_path ? path[i + 1] : -1;
        if (u >= nn) break;
        for (int32_t c = fc[u]; c > 0; c = ns[c]) learn_accept(p, child_q(tree, c), rank[c], tree->depth[c], c == next);
    }
}

void planner_observe(planner *p, const moge_tree *tree, const int32_t *path, int32_t n_path, double verify_s,
                     double other_s) {
    observe_pass(p, 1, tree->n, verify_s, other_s);
    observe_accept(p, tree, path, n_path);
}

void planner_observe_batch(planner *p, int32_t n, const moge_tree *const *trees, const int32_t *const *paths,
                           const int32_t *n_paths, double verify_s, double other_s) {
    int32_t rows = 0;
    for (int32_t t = 0; t < n; t++) rows += trees[t]->n;
    observe_pass(p, n, rows, verify_s, other_s);
    for (int32_t t = 0; t < n; t++) observe_accept(p, trees[t], paths[t], n_paths[t]);
}

static double tensor_bytes(const tensor *t) {
    return t->n_dims == 2 ? (double)dtype_row_bytes(t->type, t->shape[1]) * (double)t->shape[0] : 0;
}

double planner_expert_bytes(const moge_context *ctx) {
    const moge_model *m = ctx->model;
    if (m->cfg.n_expert <= 0 || !m->layers || !m->layers[0].exp_gate) return 0;
    const layer_weights *w = &m->layers[0];
    double per = tensor_bytes(&w->exp_gate[0]) + tensor_bytes(&w->exp_up[0]) + tensor_bytes(&w->exp_down[0]);
    return per * distinct_sum(ctx);
}

bool planner_probing(const planner *p) { return p && p->d && p->d->wait > 2; }

double planner_predicted_speedup(const planner *p) {
    if (!p || p->steps == 0 || p->pred_time <= 0 || p->plain_time <= 0) return 0;
    return (p->pred_tok / p->pred_time) / ((double)p->steps / p->plain_time);
}
