/*
 * moe.c — the cpu backend's MoE expert dispatch (backend_ops.moe_experts): the (row, slot) pairs
 * the router chose are sorted by expert, and each expert of this process's devices (one pool
 * task each; those no row chose return at once) runs as small single-threaded GEMMs over its
 * gathered rows (matmul.c matmul_range), and moe_combine adds each row's expert outputs by their weights.
 * Built per kernel variant (kernels.h).
 */
#include "runtime/cpu/kernels.h"

/* y (n, w rows) = x · wᵀ for one expert (single-threaded, inside a pool task); act is the running
 * thread's scratch for the int16 activations of row-major quantized weights. */
static void expert_matmul(float *y, const float *x, int n, const tensor *w, float *act) {
    acts xa = prepare_acts(w, x, n, act);
    matmul_range(y, &xa, n, w, NULL, 0, (int)w->shape[0]);
}

/* One expert of this process's devices: its rows gathered, gate and up, SwiGLU, down, each output
 * row scattered to its (row, slot) pair. Tasks are experts, not devices, so the threads share the
 * work expert by expert: a device owning more distinct experts than another in this batch (rows
 * are balanced by the routing, bytes are not) does not leave a thread idle. The scratch is the
 * running thread's (thread_scratch holds one per thread of the pool); every output is the same
 * whichever thread computes it. */
static void moe_expert_task(void *arg, int t) {
    const moe_args *a = arg;
    int e = a->device_begin[0] + t, first = a->offset[e], cnt = a->offset[e + 1] - first;
    if (cnt == 0) return;
    int E = a->n_embd, F = a->n_ff;
    float *xs = a->thread_scratch + (int64_t)threadpool_thread() * moe_scratch_floats(a->n, E, F);
    float *g = xs + (int64_t)a->n * E, *u = g + (int64_t)a->n * F, *y = u + (int64_t)a->n * F;
    float *act = xs + (int64_t)a->n * (2 * E + 2 * F) + (E > F ? E : F);
    for (int i = 0; i < cnt; i++)
        memcpy(xs + (int64_t)i * E, a->x + (int64_t)(a->order[first + i] / a->k) * E, (size_t)E * sizeof(float));
    expert_matmul(g, xs, cnt, &a->gate[e], act);
    expert_matmul(u, xs, cnt, &a->up[e], act);
    cpu_swiglu(g, u, (int64_t)cnt * F);
    expert_matmul(y, g, cnt, &a->down[e], act);
    for (int i = 0; i < cnt; i++)
        memcpy(a->pair_out + (int64_t)a->order[first + i] * E, y + (int64_t)i * E, (size_t)E * sizeof(float));
}

void cpu_moe_experts(const backend_env *env, const moe_args *a) {
    int n_pairs = a->n * a->k, E = a->n_embd;
    /* counting sort of the (row, slot) pairs by expert; rows stay in order within an expert */
    memset(a->offset, 0, (size_t)(a->n_expert + 1) * sizeof(int32_t));
    for (int p = 0; p < n_pairs; p++) a->offset[a->experts[p] + 1]++;
    for (int e = 0; e < a->n_expert; e++) a->offset[e + 1] += a->offset[e];
    for (int p = 0; p < n_pairs; p++) a->order[a->offset[a->experts[p]]++] = p;
    for (int e = a->n_expert; e > 0; e--) a->offset[e] = a->offset[e - 1];
    a->offset[0] = 0;
    threadpool_run(env->pool, a->device_begin[a->n_devices] - a->device_begin[0], moe_expert_task, (void *)a);
    if (a->out) moe_combine(a->out, a->pair_out, a->weights, a->n, a->k, E);
}
