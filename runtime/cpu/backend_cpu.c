/*
 * backend_cpu.c — the cpu backend's op table (backend.h backend_ops) for one kernel variant.
 *
 * Every file of runtime/cpu/ is compiled once per kernel variant (Makefile CPU_VARIANTS: its
 * instruction-set flags and -DCPU_VARIANT=name); each variant's copy of this file exports its
 * table as backend_cpu_<name>, and cpu_dispatch.c picks the one this processor runs. The ops
 * are in matmul.c, attention.c, elementwise.c and moe.c (kernels.h lists what is where).
 */
#include "runtime/cpu/kernels.h"

#define CPU_STR_(v) #v
#define CPU_STR(v) CPU_STR_(v)
#define CPU_OPS_(v) backend_cpu_##v
#define CPU_OPS(v) CPU_OPS_(v)
const backend_ops CPU_OPS(CPU_VARIANT) = {
    .name = "cpu",
    .variant = CPU_STR(CPU_VARIANT),
    .matmul = cpu_matmul,
    .rmsnorm = cpu_rmsnorm,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .moe_experts = cpu_moe_experts,
    .quant_act_row = qa_act_row,
    .quant_act8_row = qa_act8_row,
};
