/*
 * devices.c — the Ascend servers moge_simulate() knows, with the source of every figure.
 *
 * Sources (collected in shared/docs/ascend.md; no NPU or CANN toolkit was used):
 *  [A] Huawei Atlas 800I A2 / Ascend 910B product pages and their transcriptions: 910B4 280 TFLOPS
 *      fp16 official (cube ~262 + vector ~16), 20 AI cores at ~1.6 GHz (derived: 20 x 16x16x16 fp16
 *      MACs x 2 x 1.6 GHz = 262 TFLOPS; int8 16x32x16 -> 524 TOPS), 64 GB HBM at 1.6 TB/s.
 *  [B] Public torch_npu/HCCL collective measurements on 910B (algorithm bandwidth): all-gather
 *      38 / 64 / 149 GB/s and all-reduce 18 / 30 / 72 GB/s at 2 / 4 / 8 NPUs (HCCS, 7 links of
 *      56 GB/s per NPU, 8-NPU full mesh).
 *  [C] Huawei Atlas 300I Duo product page: per card 280 TOPS int8, 140 TFLOPS fp16, 96 GB LPDDR4X
 *      at 408 GB/s, two Ascend 310P3 chips, PCIe Gen4 x16 host interface; per chip (derived):
 *      140 TOPS, 70 TFLOPS, 204 GB/s, 48 GB.
 *  [D] PCIe Gen4 x16: 32 GB/s per direction theoretical; ~80 % of it achievable after encoding and
 *      packet overhead (~26 GB/s, the figure measured for device-to-device reads in [B]'s threads).
 *      The two chips of a 300I Duo card share the card's link (derived: 16 GB/s each, 12.8
 *      achievable). The 300I Duo has no HCCS: chips exchange data over PCIe.
 *  Efficiency priors (sim.h): SIM_ETA_MEM 0.80 from an element-wise kernel at ~1.28 TB/s
 *  read+write on a 1.6 TB/s 910B; SIM_ETA_COMPUTE 0.92 from large GEMMs at 91-93 % of cube peak
 *  (bf16, 910B2-class). No such measurement exists for the 310P: the same priors are used.
 */
#include <strings.h>

#include "sim/sim.h"

static const sim_device DEVICES[] = {
    {
        .name = "800I-A2",
        .chip = "Ascend 910B4",
        .chips_per_card = 1,
        .max_cards = 8,          /* 8 NPUs per server [A]; scale-out over RoCE is not modelled */
        .mem_bw = 1.6e12,        /* HBM 1.6 TB/s [A] */
        .int8_ops = 524e12,      /* cube int8, derived [A] */
        .fp16_ops = 262e12,      /* cube fp16, derived [A] */
        .mem_bytes = 64e9,       /* 64 GB HBM [A] */
        .hccs = true,
        .all_gather_bw = {0, 38e9, 64e9, 149e9}, /* [B] */
        .all_reduce_bw = {0, 18e9, 30e9, 72e9},  /* [B] */
    },
    {
        .name = "300I-Duo",
        .chip = "Ascend 310P3",
        .chips_per_card = 2,     /* [C] */
        .max_cards = 8,          /* PCIe slots of one host; the paper uses 4 cards */
        .mem_bw = 204e9,         /* 408 GB/s per card / 2 chips [C] */
        .int8_ops = 140e12,      /* 280 TOPS per card / 2 [C] */
        .fp16_ops = 70e12,       /* 140 TFLOPS per card / 2 [C] */
        .mem_bytes = 48e9,       /* 96 GB per card / 2 [C] (~44 GB usable) */
        .hccs = false,
        .link_bw = 12.8e9,       /* 32 GB/s x16 Gen4 per card / 2 chips x 0.8 achievable [D] */
    },
};

const sim_device *sim_device_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof DEVICES / sizeof DEVICES[0]; i++)
        if (!strcasecmp(name, DEVICES[i].name)) return &DEVICES[i];
    return NULL;
}

const char *sim_device_names(void) { return "800I-A2, 300I-Duo"; }
