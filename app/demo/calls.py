"""The LLM calls one request makes: how many, on which model, with what tokens and timing.

Shapes: a `sequence` of like calls (chat turns, map-reduce summaries), `rag` (an embedding, then
one answer), an `agent` run (an optional planner, then a tool loop whose context grows and is
served from the prompt cache), and the runaway loop (the same, dozens of times). Token counts
follow the OpenTelemetry convention: input includes cache reads and writes, output includes
reasoning. Calls run one after another, each starting when the previous one (plus the app's own
work between them) has finished.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from app.demo.catalog import AGENT_PLANNER_RATE, AGENT_PLANNERS, MODELS, EndpointSpec, ModelSpec

MS = 1_000_000
RUNAWAY_CALLS = (24, 72)
RUNAWAY_MODEL = "claude-sonnet-4-5"
RESPONSE_MODEL_RATE = 0.75  # calls whose instrumentation records gen_ai.response.model


@dataclass(frozen=True, slots=True)
class LlmCall:
    span_id: str
    model: ModelSpec
    start_ns: int
    end_ns: int
    input_tokens: int  # includes cache reads and writes (OTel convention)
    output_tokens: int  # includes reasoning
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    response_model: str | None = None
    error: str | None = None  # `error.type` of a failed call; a failed call reports no usage


class CallShaper:
    """Draws calls (and span/trace ids) from the one demo `random.Random`."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def sequence(self, endpoint: EndpointSpec, t: int) -> list[LlmCall]:
        model = self.pick(endpoint.models)
        calls: list[LlmCall] = []
        for _ in range(self.rng.randint(*endpoint.calls)):
            calls.append(self._single(endpoint, model, t))
            t = calls[-1].end_ns + ms(self.rng.randint(1, 20))
        return calls

    def rag(self, endpoint: EndpointSpec, t: int) -> list[LlmCall]:
        query = self.rng.randint(8, 60)
        embedding = self._call(MODELS["text-embedding-3-small"], t, query, 0)
        t = embedding.end_ns + ms(self.rng.randint(5, 60))  # the vector search
        return [embedding, self._single(endpoint, self.pick(endpoint.models), t)]

    def agent(self, endpoint: EndpointSpec, t: int) -> list[LlmCall]:
        rng = self.rng
        calls: list[LlmCall] = []
        if rng.random() < AGENT_PLANNER_RATE:
            calls.append(self._single(endpoint, self.pick(AGENT_PLANNERS), t))
            t = calls[-1].end_ns + ms(rng.randint(10, 200))
        model = self.pick(endpoint.models)
        context = _log_uniform(rng, *endpoint.input_tokens)
        for i in range(rng.randint(*endpoint.calls)):
            grown = context + rng.randint(200, 1200)  # the last tool result joins the context
            cached = written = 0
            if model.provider == "anthropic":
                cached = context if i else 0
                written = grown - cached - rng.randint(20, 150)
            elif model.provider == "openai" and i and context >= 1024:
                cached = context // 128 * 128
            output = _log_uniform(rng, *endpoint.output_tokens)
            calls.append(self._call(model, t, grown, output, cached, written))
            t = calls[-1].end_ns + ms(rng.randint(20, 1500))  # the tool runs
            context = grown
        return calls

    def runaway_loop(self, t: int) -> list[LlmCall]:
        rng = self.rng
        model = MODELS[RUNAWAY_MODEL]
        context = rng.randint(5000, 8000)
        calls: list[LlmCall] = []
        for i in range(rng.randint(*RUNAWAY_CALLS)):
            grown = context + rng.randint(600, 1500)
            cached = context if i else 0
            written = grown - cached - rng.randint(50, 200)
            calls.append(self._call(model, t, grown, rng.randint(150, 600), cached, written))
            t = calls[-1].end_ns + ms(rng.randint(100, 2500))
            context = grown
        return calls

    def pick(self, mix: tuple[tuple[str, float], ...]) -> ModelSpec:
        names = [name for name, _ in mix]
        return MODELS[self.rng.choices(names, weights=[w for _, w in mix])[0]]

    def trace_id(self) -> str:
        return f"{self.rng.getrandbits(128) or 1:032x}"

    def span_id(self) -> str:
        return f"{self.rng.getrandbits(64) or 1:016x}"

    def _single(self, endpoint: EndpointSpec, model: ModelSpec, t: int) -> LlmCall:
        rng = self.rng
        tokens_in = _log_uniform(rng, *endpoint.input_tokens)
        tokens_out = _log_uniform(rng, *endpoint.output_tokens) if endpoint.output_tokens[1] else 0
        cached = written = 0
        r = rng.random()
        if model.provider == "openai" and tokens_in >= 1024 and r < model.cache_read_rate:
            # OpenAI caches prompts of 1,024+ tokens, in whole 128-token blocks.
            cached = max(1024, int(tokens_in * rng.uniform(0.3, 0.9)) // 128 * 128)
        elif model.provider == "anthropic" and r < model.cache_read_rate:
            cached = int(tokens_in * rng.uniform(0.4, 0.9))
        elif model.provider == "anthropic" and r < model.cache_read_rate + model.cache_write_rate:
            written = int(tokens_in * rng.uniform(0.3, 0.8))
        return self._call(model, t, tokens_in, tokens_out, cached, written)

    def _call(
        self,
        model: ModelSpec,
        start_ns: int,
        tokens_in: int,
        tokens_out: int,
        cached: int = 0,
        written: int = 0,
    ) -> LlmCall:
        rng = self.rng
        reasoning = 0
        if model.reasoning:
            reasoning = int(tokens_out * rng.uniform(0.5, 3.0))
            tokens_out += reasoning
        if model.operation == "embeddings":
            duration = rng.randint(40, 250) + tokens_in // 100
        else:
            # Time to first token grows with the prompt; then the model streams its output.
            duration = (
                rng.randint(150, 900)
                + tokens_in // 40
                + 1000 * tokens_out // model.output_tokens_per_s
            )
        response_model = None
        if model.snapshot and rng.random() < RESPONSE_MODEL_RATE:
            response_model = model.snapshot
        return LlmCall(
            span_id=self.span_id(),
            model=model,
            start_ns=start_ns,
            end_ns=start_ns + ms(duration),
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cache_read_tokens=cached,
            cache_write_tokens=written,
            reasoning_tokens=reasoning,
            response_model=response_model,
        )


def ms(milliseconds: int) -> int:
    """Milliseconds as nanoseconds."""
    return milliseconds * MS


def _log_uniform(rng: random.Random, lo: int, hi: int) -> int:
    return int(math.exp(rng.uniform(math.log(max(lo, 1)), math.log(max(hi, 1)))))
