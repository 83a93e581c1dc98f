#!/usr/bin/python3
"""check_spills.py — find kernel inner loops whose accumulators GCC spilled to the stack.

Usage: /usr/bin/python3 tools/check_spills.py [OBJECT...]   (default: build/runtime/cpu/*.o)

A register tile keeps its accumulators in vector registers; when a variant runs out of them
(16 with AVX2, 32 with AVX-512) GCC may keep one in a stack slot, and every step of the loop then
waits on a store and its reload (about 10 cycles on the Zen 3 instead of the multiply-add's 4).
That cost a third of the time of the one-row Q8 and BF16 tiles and of the W8A8 / W4A8 tiles
without VNNI before it was found this way. The check disassembles each object (objdump from
binutils), takes every loop (a backward jump over at most 160 instructions) and reports those in
which a multiply-add (vfmadd*) or integer dot product (vpdp*, vpmadd*) reads a stack slot that
the same loop stores a vector to. Spilled operands that are only read (scales, constants) are not
reported: they cost a load, not a round trip.

Known and harmless: the 2-panel 3-row panel tiles of F16 / BF16 / Q8 / Q4 (PT_TYPE generates
them for every type; matmul_panels asks for them only with f32 weights), and the row-layout
Q8 / Q4 tiles (tile_q), whose accumulators take one multiply-add per block of 32 weights. Exit
status 0 always: this is a tool for kernel work, not a test (its verdict depends on the compiler).
"""
import glob
import re
import subprocess
import sys

LOOP_MAX = 160
ACC_OPS = re.compile(r'^(vfn?madd|vpdp|vpmadd)')
STACK = re.compile(r'(-?0x[0-9a-f]+\(%rsp\)|\(%rsp\))')


def functions(obj):
    out = subprocess.run(['objdump', '-d', '--no-show-raw-insn', obj], capture_output=True, text=True, check=True).stdout
    for chunk in re.split(r'\n(?=[0-9a-f]+ <)', out):
        m = re.match(r'([0-9a-f]+) <([^>]+)>:', chunk)
        if not m:
            continue
        ins = []
        for line in chunk.split('\n')[1:]:
            mm = re.match(r'\s*([0-9a-f]+):\s+(\S+)\s*(.*)', line)
            if mm:
                ins.append((int(mm.group(1), 16), mm.group(2), mm.group(3)))
        yield m.group(2), ins


def spilled_loops(ins):
    found = {}
    for addr, op, args in ins:
        if not op.startswith('j'):
            continue
        t = re.match(r'([0-9a-f]+)', args)
        if not t or int(t.group(1), 16) >= addr:
            continue
        top = int(t.group(1), 16)
        body = [x for x in ins if top <= x[0] <= addr]
        if len(body) > LOOP_MAX:
            continue
        read = {s for x in body if ACC_OPS.match(x[1]) for s in STACK.findall(x[2])}
        stored = {x[2].split(',')[-1].strip() for x in body if x[1].startswith('vmov') and STACK.search(x[2].split(',')[-1])}
        slots = read & stored
        if slots:
            n_acc = sum(1 for x in body if ACC_OPS.match(x[1]))
            found[top] = (len(body), n_acc, sorted(slots))
    return found


def main():
    objs = sys.argv[1:] or sorted(glob.glob('build/runtime/cpu/*.o'))
    if not objs:
        print('check_spills: no objects (build first: make)', file=sys.stderr)
        return 0
    total = 0
    for obj in objs:
        for name, ins in functions(obj):
            for top, (n, n_acc, slots) in sorted(spilled_loops(ins).items()):
                total += 1
                print(f'{obj}: {name}: loop at {top:#x} ({n} instructions, {n_acc} multiply-adds): '
                      f'accumulator in {", ".join(slots)}')
    print(f'check_spills: {total} loop(s) with a spilled accumulator in {len(objs)} object(s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
