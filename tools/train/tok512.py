# tok512.py — encoder and decoder for a SentencePiece-style BPE tokenizer.json (the tok512
# tokenizer of models/stories260K), in plain Python for the trainer's data pipeline.
#
# The tokenizer.json this reads: normalizer = Prepend "▁" then Replace " " -> "▁", no
# pre-tokenizer, model BPE with byte_fallback (a character not in the vocabulary becomes its UTF-8
# bytes as <0xNN> pieces), merges applied by rank (lowest rank first, leftmost on equal rank).
# No piece of tok512 holds "▁" anywhere but at its start, so a merge never crosses a "▁": the
# normalised text is split before every "▁" and each word is encoded alone (and cached), which
# gives the same ids as encoding the whole text at once. load() checks that property.
#
# Checked against llama2.c's own test vectors: `/usr/bin/python3 tools/train/tok512.py
# ../shared/data/stories260K/tok512-vectors.tsv` prints "ok N".

import json
import sys

SPACE = "\u2581"  # ▁


class Tok512:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
        model = spec["model"]
        if model["type"] != "BPE" or not model.get("byte_fallback"):
            raise ValueError(f"{path}: expected a BPE model with byte_fallback")
        self.vocab = model["vocab"]
        self.pieces = {i: p for p, i in self.vocab.items()}
        for piece in self.vocab:
            if SPACE in piece[1:]:
                raise ValueError(f"{path}: piece {piece!r} has an inner '▁'; word split unsafe")
        self.ranks = {}
        for rank, merge in enumerate(model["merges"]):
            a, b = merge.split(" ") if isinstance(merge, str) else merge
            self.ranks[(a, b)] = rank
        self.bos_id = self.vocab["<s>"]
        self.eos_id = self.vocab["</s>"]
        self.byte_ids = [self.vocab[f"<0x{b:02X}>"] for b in range(256)]
        self.byte_of = {i: b for b, i in enumerate(self.byte_ids)}
        self.cache = {}

    def _word(self, word):
        ids = self.cache.get(word)
        if ids is not None:
            return ids
        parts = list(word)
        while len(parts) > 1:
            best, best_i = None, -1
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best):
                    best, best_i = r, i
            if best is None:
                break
            parts[best_i:best_i + 2] = [parts[best_i] + parts[best_i + 1]]
        ids = []
        for p in parts:
            i = self.vocab.get(p)
            if i is not None:
                ids.append(i)
            else:
                ids.extend(self.byte_ids[b] for b in p.encode("utf-8"))
        self.cache[word] = ids
        return ids

    def encode(self, text, bos=False, eos=False):
        """Ids of `text` (normalised as the tokenizer.json says), with optional BOS/EOS."""
        ids = [self.bos_id] if bos else []
        if text:
            norm = SPACE + text.replace(" ", SPACE)
            start = 0
            for i in range(1, len(norm) + 1):
                if i == len(norm) or norm[i] == SPACE:
                    ids.extend(self._word(norm[start:i]))
                    start = i
        if eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids):
        """Text of `ids` (special tokens dropped, byte pieces fused, leading space stripped)."""
        out, pending = [], bytearray()
        for i in ids:
            if i in self.byte_of:
                pending.append(self.byte_of[i])
                continue
            if pending:
                out.append(pending.decode("utf-8", errors="replace"))
                pending = bytearray()
            if i in (0, self.bos_id, self.eos_id):
                continue
            out.append(self.pieces[i].replace(SPACE, " "))
        if pending:
            out.append(pending.decode("utf-8", errors="replace"))
        text = "".join(out)
        return text[1:] if text.startswith(" ") else text


def main(argv):
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    tok = Tok512(os.path.join(here, "..", "..", "models", "stories260K", "tokenizer.json"))
    n = 0
    for line in open(argv[1], encoding="utf-8"):
        text, ids = line.rstrip("\n").split("\t")
        text = text.replace("\\t", "\t").replace("\\\\", "\\")
        want = [int(x) for x in ids.split()]
        got = tok.encode(text, bos=True)
        if got != want:
            raise SystemExit(f"mismatch for {text!r}:\n got  {got}\n want {want}")
        if tok.decode(got) != text:
            raise SystemExit(f"decode mismatch for {text!r}: {tok.decode(got)!r}")
        n += 1
    print("ok", n)


if __name__ == "__main__":
    main(sys.argv)
