#!/usr/bin/python3
# llama2c_tokenize.py — a Python port of llama2.c's encoder (run.c, encode() with bos=1, eos=0),
# used to make expected ids for checking a converted tokenizer.json against llama2.c.
# Writes one line per input line: "text<TAB>ids" (BOS first; \n, \t and \\ in the text escaped),
# the format tools/check_tokenizer.mjs reads.
#
# Usage: /usr/bin/python3 tools/llama2c_tokenize.py TOKENIZER.bin [TEXT_FILE] > vectors.tsv
#        (TEXT_FILE defaults to stdin; empty lines are skipped)
#
# The encoder: prepend a " " piece (when the text is not empty), look up each UTF-8 character
# (unknown ones become byte tokens <0xNN> = id byte + 3), then repeatedly merge the adjacent
# pair whose concatenation is a vocab piece with the highest score (leftmost on ties).

import struct
import sys


def load(path):
    with open(path, "rb") as f:
        blob = f.read()
    offset, pieces, scores = 4, [], []
    while offset < len(blob):
        score, length = struct.unpack_from("<fi", blob, offset)
        offset += 8
        pieces.append(blob[offset:offset + length])
        scores.append(score)
        offset += length
    return pieces, scores


def encode(text, pieces, scores):
    lookup = {}
    for i, p in enumerate(pieces):
        lookup.setdefault(p, i)  # llama2.c's bsearch may pick either of duplicates; none here
    tokens = [1]
    if text:
        tokens.append(lookup[b" "])
    for ch in text:
        b = ch.encode("utf-8")
        if b in lookup:
            tokens.append(lookup[b])
        else:
            tokens.extend(x + 3 for x in b)
    while True:
        best, best_id, best_i = -1e10, -1, -1
        for i in range(1, len(tokens) - 1):  # never merge BOS
            merged = lookup.get(pieces[tokens[i]] + pieces[tokens[i + 1]])
            if merged is not None and scores[merged] > best:
                best, best_id, best_i = scores[merged], merged, i
        if best_i < 0:
            return tokens
        tokens[best_i:best_i + 2] = [best_id]


def main(argv):
    if len(argv) not in (2, 3):
        raise SystemExit("usage: llama2c_tokenize.py TOKENIZER.bin [TEXT_FILE]")
    pieces, scores = load(argv[1])
    src = open(argv[2], encoding="utf-8") if len(argv) == 3 else sys.stdin
    for line in src:
        text = line.rstrip("\n")
        if not text:
            continue
        ids = encode(text, pieces, scores)
        esc = text.replace("\\", "\\\\").replace("\t", "\\t")
        print(f"{esc}\t{' '.join(map(str, ids))}")


if __name__ == "__main__":
    main(sys.argv)
