"""Streams greedy completions from OpenAI-compatible servers and reports
decode throughput side by side. Used by scripts/bench-node; standard library only.

Each round runs every server at every concurrency, alternating which server
goes first, and the report gives medians over rounds and the ratio of the
first server to the others (and to the kernel ceiling when given).
"""
import argparse
import json
import statistics
import threading
import time
import urllib.request


def stream_one(url, prompt, tokens, results, index):
    body = json.dumps({
        "model": "bench",
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": tokens,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }).encode()
    request = urllib.request.Request(url + "/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    chunks, usage = 0, None
    with urllib.request.urlopen(request, timeout=600) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0].get("delta", {}).get("content"):
                chunks += 1
            usage = chunk.get("usage") or usage
    results[index] = usage["completion_tokens"] if usage else chunks


def run(url, streams, tokens, tag):
    results = [0] * streams
    threads = [threading.Thread(target=stream_one,
                                args=(url, f"Story {tag}-{i}: tell me about a lighthouse keeper.", tokens, results, i))
               for i in range(streams)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return sum(results) / elapsed, sum(results)


def read_ceiling(path):
    """S_TG by batch size from llama-batched-bench's table."""
    ceiling = {}
    if not path:
        return ceiling
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 8 and cells[2].isdigit():
            ceiling[int(cells[2])] = float(cells[7])
    return ceiling


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", action="append", required=True, help="NAME=URL; the first is compared to the rest")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--ceiling-file")
    args = parser.parse_args()
    servers = [s.split("=", 1) for s in args.server]
    levels = [int(c) for c in args.concurrency.split(",")]
    ceiling = read_ceiling(args.ceiling_file)

    for name, url in servers:  # warm-up: load pages, fill caches
        run(url, 1, 16, "warmup")

    rates = {(name, c): [] for name, _ in servers for c in levels}
    for r in range(args.rounds):
        order = servers if r % 2 == 0 else servers[::-1]
        for c in levels:
            for name, url in order:
                rate, total = run(url, c, args.tokens, f"r{r}c{c}")
                rates[(name, c)].append(rate)
                print(f"round {r + 1} streams {c:2d} {name:16s} {rate:7.1f} tok/s ({total} tokens)", flush=True)

    first = servers[0][0]
    print()
    print(f"median of {args.rounds} rounds, {args.tokens} greedy tokens per stream, aggregate tok/s")
    header = f"{'streams':>7} " + " ".join(f"{n:>16}" for n, _ in servers)
    header += " " + " ".join(f"{first + '/' + n:>28}" for n, _ in servers[1:])
    if ceiling:
        header += f" {'ceiling (S_TG)':>15} {first + '/ceiling':>24}"
    print(header)
    for c in levels:
        medians = {n: statistics.median(rates[(n, c)]) for n, _ in servers}
        line = f"{c:>7} " + " ".join(f"{medians[n]:>16.1f}" for n, _ in servers)
        line += " " + " ".join(f"{medians[first] / medians[n]:>28.2f}" for n, _ in servers[1:])
        if c in ceiling:
            line += f" {ceiling[c]:>15.1f} {medians[first] / ceiling[c]:>24.2f}"
        print(line)


if __name__ == "__main__":
    main()
