#!/usr/bin/python3
"""hub_server.py — a small imitation of the Hugging Face hub for tests/test_pull.c (stdlib only).

Usage: hub_server.py [LIFETIME_S]   (default 60; the server exits by itself after that long)
Listens on 127.0.0.1 on a free port and prints the port as its first stdout line.

Endpoints (as the hub serves them):
  GET /api/models/OWNER/NAME[/revision/REV][?blobs=true]
        {"id", "sha", "siblings": [{"rfilename", and with blobs: "size", "lfs": {"sha256", "size"}}]}
        404 + X-Error-Code RepoNotFound / RevisionNotFound; 401 for test/private without the token
  GET /OWNER/NAME/resolve/REV/FILE
        small files directly, *.safetensors through a 302 to /_cdn/OWNER/NAME/COMMIT/FILE (as the hub
        sends LFS files to its CDN); "Range: bytes=N-" gives 206 (416 past the end)
  GET /_log   the requests seen so far: [{"method", "path", "range", "auth"}], oldest first

Repositories (all but test/sharded and test/noweights serve models/stories260K's files):
  test/tiny        revisions main and v1 (two commits, same files), plus files a pull must skip
  test/flaky       the first transfer of model.safetensors is cut off halfway
  test/flaky-retry same, a separate counter
  test/norange     cut off halfway once, then ignores Range (answers 200 with the whole file)
  test/badsum      advertises a wrong sha256 for model.safetensors
  test/badsize     advertises config.json 10 bytes shorter than it is
  test/badrange    cut off once, then answers a Range request with a 206 that starts at byte 0
  test/private     401 unless "Authorization: Bearer test-token-123"
  test/broken      model.safetensors always answers 500
  test/sharded     model.safetensors.index.json naming two shards, and a consolidated.safetensors it does not name
  test/noweights   config.json only
Anything else is 404 RepoNotFound.
"""
import hashlib
import http.server
import json
import os
import sys
import threading
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(ROOT, "models", "stories260K")
TOKEN = "test-token-123"


def read(name):
    with open(os.path.join(MODEL_DIR, name), "rb") as f:
        return f.read()


def commit_of(label):
    return hashlib.sha1(label.encode()).hexdigest()


def make_repos():
    model = {n: read(n) for n in ("config.json", "tokenizer.json", "tokenizer_config.json",
                                  "model.safetensors", "README.md", "LICENSE")}
    skipped = {  # present in the repository, never needed by moge
        ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
        "pytorch_model.bin": b"\0" * 4096,
        "original/consolidated.safetensors": b"\1" * 4096,
        "LICENSE-big.txt": b"x" * (1 << 20 | 1),
    }
    repos = {}

    def add(name, files, **mode):
        repos[name] = dict(files=files, revisions={"main": commit_of(name)}, **mode)

    add("test/tiny", {**model, **skipped})
    repos["test/tiny"]["revisions"]["v1"] = commit_of("test/tiny@v1")
    add("test/flaky", dict(model), cut_once=True)
    add("test/flaky-retry", dict(model), cut_once=True)
    add("test/norange", dict(model), cut_once=True, ignore_range=True)
    add("test/badsum", dict(model), wrong_sha=True)
    add("test/badsize", dict(model), wrong_size=True)
    add("test/badrange", dict(model), cut_once=True, bad_range=True)
    add("test/private", dict(model), token=True)
    add("test/broken", dict(model), fail_500=True)
    shard1, shard2 = bytes(range(256)) * 40, bytes(reversed(range(256))) * 30
    index = {"metadata": {"total_size": len(shard1) + len(shard2)},
             "weight_map": {"a.weight": "model-00001-of-00002.safetensors",
                            "b.weight": "model-00002-of-00002.safetensors",
                            "c.weight": "model-00001-of-00002.safetensors"}}
    add("test/sharded", {"config.json": model["config.json"], "tokenizer.json": model["tokenizer.json"],
                         "model.safetensors.index.json": json.dumps(index).encode(),
                         "model-00001-of-00002.safetensors": shard1,
                         "model-00002-of-00002.safetensors": shard2,
                         "consolidated.safetensors": b"\2" * 5000})
    add("test/noweights", {"config.json": model["config.json"]})
    return repos


REPOS = make_repos()
LOG = []
CUT_DONE = set()
LOCK = threading.Lock()


def is_lfs(name):
    return name.endswith(".safetensors") or name.endswith(".bin")


class Hub(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: a cut-off closes it

    def log_message(self, fmt, *args):  # quiet: the test's output stays readable
        pass

    def send(self, code, body=b"", ctype="application/json", headers=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def error(self, code, message, error_code=None):
        headers = [("X-Error-Code", error_code)] if error_code else []
        self.send(code, json.dumps({"error": message}).encode(), headers=headers)

    def authorized(self, repo):
        return not repo.get("token") or self.headers.get("Authorization") == "Bearer " + TOKEN

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        if url.path == "/_log":
            with LOCK:
                return self.send(200, json.dumps(LOG).encode())
        with LOCK:
            LOG.append({"method": "GET", "path": url.path, "range": self.headers.get("Range"),
                        "auth": self.headers.get("Authorization")})
        try:
            if len(parts) >= 3 and parts[0] == "api" and parts[1] == "models":
                return self.api(parts[2:], urllib.parse.parse_qs(url.query))
            if len(parts) >= 5 and parts[2] == "resolve":
                return self.resolve(parts[0] + "/" + parts[1], parts[3], "/".join(parts[4:]))
            if len(parts) >= 5 and parts[0] == "_cdn":
                return self.blob(parts[1] + "/" + parts[2], "/".join(parts[4:]))
            self.error(404, "no such endpoint")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def find(self, repo_id):
        repo = REPOS.get(repo_id)
        if repo is None:
            self.error(404, "Repository not found", "RepoNotFound")
        elif not self.authorized(repo):
            self.error(401, "Invalid credentials in Authorization header")
            repo = None
        return repo

    def commit(self, repo, rev):
        if rev in repo["revisions"]:
            return repo["revisions"][rev]
        if rev in repo["revisions"].values():
            return rev
        self.error(404, "Invalid rev id: " + rev, "RevisionNotFound")
        return None

    def api(self, rest, query):
        if len(rest) < 2 or (len(rest) > 2 and (rest[2] != "revision" or len(rest) < 4)):
            return self.error(404, "no such endpoint")
        repo_id = rest[0] + "/" + rest[1]
        repo = self.find(repo_id)
        if repo is None:
            return
        sha = self.commit(repo, "/".join(rest[3:]) if len(rest) > 2 else "main")
        if sha is None:
            return
        blobs = query.get("blobs") == ["true"]
        siblings = []
        for name, data in repo["files"].items():
            s = {"rfilename": name}
            if blobs:
                s["size"] = len(data) - (10 if repo.get("wrong_size") and name == "config.json" else 0)
                if is_lfs(name):
                    digest = hashlib.sha256(data).hexdigest()
                    if repo.get("wrong_sha") and name == "model.safetensors":
                        digest = hashlib.sha256(b"not the file").hexdigest()
                    s["lfs"] = {"sha256": digest, "size": len(data), "pointerSize": 134}
            siblings.append(s)
        self.send(200, json.dumps({"id": repo_id, "modelId": repo_id, "sha": sha, "private": bool(repo.get("token")),
                                   "siblings": siblings}).encode())

    def resolve(self, repo_id, rev, name):
        repo = self.find(repo_id)
        if repo is None:
            return
        sha = self.commit(repo, rev)
        if sha is None:
            return
        if name not in repo["files"]:
            return self.error(404, "Entry not found", "EntryNotFound")
        if is_lfs(name):
            self.send(302, b"", headers=[("Location", "/_cdn/%s/%s/%s" % (repo_id, sha, urllib.parse.quote(name)))])
        else:
            self.blob(repo_id, name)

    def blob(self, repo_id, name):
        repo = REPOS.get(repo_id)
        data = repo["files"].get(name) if repo else None
        if data is None:
            return self.error(404, "Entry not found", "EntryNotFound")
        weights = name == "model.safetensors"
        if weights and repo.get("fail_500"):
            return self.error(500, "Internal Error")
        cut = False
        if weights and repo.get("cut_once"):
            with LOCK:
                cut = repo_id not in CUT_DONE
                CUT_DONE.add(repo_id)
        start = 0
        rng = self.headers.get("Range")
        if rng and not (repo.get("ignore_range") and not cut):
            if not rng.startswith("bytes=") or not rng[6:].split("-")[0].isdigit():
                return self.error(400, "bad Range " + rng)
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                return self.send(416, b"", headers=[("Content-Range", "bytes */%d" % len(data))])
        if start and repo.get("bad_range"):
            start, body = 0, data
            self.send_response(206)
            self.send_header("Content-Range", "bytes 0-%d/%d" % (len(data) - 1, len(data)))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return self.wfile.write(body)
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        self.send_header("ETag", '"%s"' % hashlib.sha256(data).hexdigest())
        self.end_headers()
        if cut:  # half the body, then the connection drops
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


def main():
    lifetime = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    server.daemon_threads = True
    timer = threading.Timer(lifetime, lambda: os._exit(0))
    timer.daemon = True
    timer.start()
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
