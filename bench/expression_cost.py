"""Worst cases of the expression CPU budget, in ms: `python bench/expression_cost.py`."""

import time
from datetime import UTC, datetime

from treadle.domain.compile import compile_workflow, parse_definition
from treadle.domain.decider import decide, new_run
from treadle.domain.errors import ExpressionError
from treadle.domain.events import RunStarted
from treadle.domain.expressions import compile_template


def timed(src, data):
    t = compile_template("${ " + src + " }")
    s = time.perf_counter()
    try:
        t.render({"input": data})
        out = "ok"
    except ExpressionError as e:
        out = type(e).__name__
    return (time.perf_counter() - s) * 1000, out


big = list(range(100_000))
cases = {
    "length(sort(input.a)) 100k": ("length(sort(input.a))", {"a": big}),
    "input (100k ints)": ("input", {"a": big}),
    "sort 10k": ("sort(input.a)", {"a": big[:10000]}),
    "sort_by dicts 5k": ("sort_by(input.a, &k)", {"a": [{"k": i} for i in range(5000)]}),
    "projection 100k": ("input.a[*].x", {"a": [{"x": i} for i in range(100_000)]}),
    "filter 100k": ("input.a[?@ > `5`]", {"a": big}),
    "map 100k": ("map(&to_string(@), input.a)", {"a": big}),
    "nested projections": (
        "input.a[*].a[*].a[*]",
        {"a": [{"a": [{"a": list(range(100))}] * 100}] * 100},
    ),
    "to_string big": ("to_string(input.a)", {"a": big}),
    "join 100k": ("join(',', input.a)", {"a": [str(i) for i in big]}),
    "contains": ("contains(input.a, `99999`)", {"a": big}),
    "keys/values": ("length(values(input.a))", {"a": {str(i): i for i in range(100_000)}}),
}
for name, (src, data) in cases.items():
    ms, out = timed(src, data)
    print(f"{name:32s} {ms:8.1f} ms  {out}")

# the case: 300 x length(sort(input.a)) in one decision
tasks = {
    f"t{i}": {"handler": "h", "input": {"n": "${ length(sort(input.a)) }"}} for i in range(300)
}
wf = compile_workflow(parse_definition({"name": "w", "tasks": tasks}))
now = datetime(2030, 1, 1, tzinfo=UTC)
for size in (100_000, 2000):
    state = new_run(wf, run_id="r", version=1, input={"a": list(range(size))}, now=now)
    began = time.perf_counter()
    d = decide(wf, state, RunStarted(run_id="r"), now)
    ms = (time.perf_counter() - began) * 1000
    print(f"300 x sort {size:>7} one decision {ms:8.1f} ms  {d.state.status.value}")
