"""What the demo company runs: its models, endpoints, teams and users.

Everything here is fixed data, independent of the generator's seed, so that the config the demo
needs (`DEMO_PRICE_OVERRIDES`, `DEMO_USER_TEAMS`) can be a constant. The seed only changes the
traffic drawn from it (see `app.demo.traffic`).

Model names are ones the `genai-prices` catalog knows (the test checks each), except the
self-hosted `vllm` model, which is priced by `DEMO_PRICE_OVERRIDES`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model as the application calls it, with how its calls tend to look."""

    provider: str  # `gen_ai.provider.name`
    name: str  # `gen_ai.request.model`
    snapshot: str | None  # dated `gen_ai.response.model` it is served as, when the API says so
    operation: str = "chat"  # `gen_ai.operation.name`
    output_tokens_per_s: int = 80  # for plausible span durations
    reasoning: bool = False  # o-series: part of the output is reasoning tokens
    # Cache behaviour: OpenAI caches prompts of 1,024+ tokens by itself; Anthropic caches what
    # the app marks, so it also reports cache writes.
    cache_read_rate: float = 0.0
    cache_write_rate: float = 0.0


MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("openai", "gpt-4o", "gpt-4o-2024-08-06", cache_read_rate=0.35),
        ModelSpec(
            "openai",
            "gpt-4o-mini",
            "gpt-4o-mini-2024-07-18",
            output_tokens_per_s=120,
            cache_read_rate=0.45,
        ),
        ModelSpec("openai", "gpt-4.1", "gpt-4.1-2025-04-14", cache_read_rate=0.35),
        ModelSpec(
            "openai",
            "gpt-4.1-mini",
            "gpt-4.1-mini-2025-04-14",
            output_tokens_per_s=110,
            cache_read_rate=0.4,
        ),
        ModelSpec(
            "openai",
            "o4-mini",
            "o4-mini-2025-04-16",
            output_tokens_per_s=60,
            reasoning=True,
            cache_read_rate=0.3,
        ),
        ModelSpec(
            "openai",
            "text-embedding-3-small",
            "text-embedding-3-small",
            operation="embeddings",
            output_tokens_per_s=0,
        ),
        ModelSpec(
            "anthropic",
            "claude-sonnet-4-5",
            "claude-sonnet-4-5-20250929",
            output_tokens_per_s=70,
            cache_read_rate=0.4,
            cache_write_rate=0.15,
        ),
        ModelSpec(
            "anthropic",
            "claude-haiku-4-5",
            "claude-haiku-4-5-20251001",
            output_tokens_per_s=140,
            cache_read_rate=0.3,
            cache_write_rate=0.1,
        ),
        ModelSpec(
            "anthropic",
            "claude-opus-4-1",
            "claude-opus-4-1-20250805",
            output_tokens_per_s=40,
            cache_read_rate=0.3,
            cache_write_rate=0.2,
        ),
        # Self-hosted behind vLLM's OpenAI-compatible server; not in any public price list.
        ModelSpec("vllm", "llama-3.1-70b", None, output_tokens_per_s=50),
    )
}

# The price the demo gives its self-hosted model (USD per million tokens, decimal strings),
# in the shape of `pricing.overrides` entries in spendguard.yaml.
# GPU-priced: its tokens cost nothing, its pool's GPUs are allocated to its calls (app.demo.gpu).
DEMO_PRICE_OVERRIDES: list[dict[str, str]] = [
    {
        "provider": "vllm",
        "model": "llama-3.1-70b",
        "input_per_mtok": "0",
        "output_per_mtok": "0",
    }
]


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """One route of the demo application and the LLM calls a request to it makes.

    `pattern` names how the calls are laid out (see `app.demo.traffic`); `models` is the mix
    for the main call(s) as (model name, weight); `calls` is the inclusive range of main calls;
    `input_tokens` / `output_tokens` the log-uniform range per call; `no_llm_rate` the share of
    requests answered without any LLM call (app-level cache hits, validation errors).
    """

    route: str
    method: str
    service: str
    weight: float  # share of all traffic, before team preferences
    pattern: str  # "single", "rag", "agent", "none"
    models: tuple[tuple[str, float], ...] = ()
    calls: tuple[int, int] = (1, 1)
    input_tokens: tuple[int, int] = (0, 0)
    output_tokens: tuple[int, int] = (0, 0)
    no_llm_rate: float = 0.0
    overhead_ms: tuple[int, int] = (5, 40)


ENDPOINTS: tuple[EndpointSpec, ...] = (
    EndpointSpec(
        "/v1/chat",
        "POST",
        "support-bot",
        weight=0.30,
        pattern="single",
        models=(
            ("gpt-4o-mini", 45),
            ("claude-sonnet-4-5", 25),
            ("gpt-4o", 15),
            ("claude-haiku-4-5", 15),
        ),
        calls=(1, 2),
        input_tokens=(900, 6000),
        output_tokens=(80, 700),
        no_llm_rate=0.03,
    ),
    EndpointSpec(
        "/v1/search",
        "GET",
        "search-api",
        weight=0.22,
        pattern="rag",
        models=(("gpt-4.1-mini", 55), ("llama-3.1-70b", 45)),
        input_tokens=(1500, 7000),
        output_tokens=(60, 400),
        no_llm_rate=0.25,
    ),
    EndpointSpec(
        "/v1/summarize",
        "POST",
        "docs-api",
        weight=0.10,
        pattern="single",
        models=(("gpt-4.1", 40), ("claude-haiku-4-5", 30), ("llama-3.1-70b", 30)),
        calls=(1, 4),
        input_tokens=(3000, 24000),
        output_tokens=(200, 1200),
        no_llm_rate=0.08,
    ),
    EndpointSpec(
        "/v1/agent/run",
        "POST",
        "agents",
        weight=0.05,
        pattern="agent",
        models=(("claude-sonnet-4-5", 55), ("o4-mini", 30), ("gpt-4.1", 15)),
        calls=(3, 12),
        input_tokens=(2500, 9000),
        output_tokens=(120, 900),
        overhead_ms=(50, 400),
    ),
    EndpointSpec(
        "/v1/embed",
        "POST",
        "search-api",
        weight=0.10,
        pattern="single",
        models=(("text-embedding-3-small", 1),),
        input_tokens=(200, 8000),
        no_llm_rate=0.05,
    ),
    EndpointSpec(
        "/v1/classify",
        "POST",
        "support-bot",
        weight=0.11,
        pattern="single",
        models=(("gpt-4o-mini", 60), ("claude-haiku-4-5", 25), ("llama-3.1-70b", 15)),
        input_tokens=(300, 1800),
        output_tokens=(3, 40),
        no_llm_rate=0.2,
    ),
    EndpointSpec("/v1/profile", "GET", "web-api", weight=0.12, pattern="none"),
)

ENDPOINTS_BY_ROUTE: dict[str, EndpointSpec] = {e.route: e for e in ENDPOINTS}
# The planner step of an agent run, before its tool loop.
AGENT_PLANNERS: tuple[tuple[str, float], ...] = (("o4-mini", 60), ("claude-opus-4-1", 40))
AGENT_PLANNER_RATE = 0.5


@dataclass(frozen=True, slots=True)
class TeamSpec:
    name: str
    size: int
    # Multipliers on `EndpointSpec.weight` for this team's users.
    prefers: tuple[tuple[str, float], ...] = ()


TEAMS: tuple[TeamSpec, ...] = (
    TeamSpec("support", 90, (("/v1/chat", 2.0), ("/v1/classify", 2.0))),
    TeamSpec("search", 70, (("/v1/search", 2.5), ("/v1/embed", 2.0))),
    TeamSpec("docs", 55, (("/v1/summarize", 3.0),)),
    TeamSpec("research", 45, (("/v1/agent/run", 4.0), ("/v1/summarize", 1.5))),
    TeamSpec("growth", 60, (("/v1/chat", 1.3), ("/v1/profile", 1.5))),
    TeamSpec("platform", 40, (("/v1/embed", 2.0), ("/v1/agent/run", 1.5))),
)


@dataclass(frozen=True, slots=True)
class DemoUser:
    id: str
    team: str
    weight: float  # relative request rate (Zipf-like over a fixed ranking)
    sends_team: bool  # False: the app does not set `team.id`; config maps the user instead


ZIPF_EXPONENT = 0.85
# Share of users whose requests carry no `team.id` attribute.
NO_TEAM_ATTR_RATE = 0.12
# The user whose agent loops in the last two days of the demo window.
RUNAWAY_USER = "u-1313"
RUNAWAY_TEAM = "research"


def _build_users() -> tuple[DemoUser, ...]:
    # A fixed generator, not the demo seed: the population (and so DEMO_USER_TEAMS) is constant.
    rng = random.Random(20240601)  # noqa: S311 - synthetic data, not security
    members = [team.name for team in TEAMS for _ in range(team.size)]
    rng.shuffle(members)
    ids = [f"u-{1000 + i}" for i in range(len(members))]
    ranks = list(range(1, len(members) + 1))
    rng.shuffle(ranks)
    # The runaway user is a light user normally (the last rank), so the spike stands out.
    runaway = ids.index(RUNAWAY_USER)
    last = ranks.index(len(members))
    ranks[runaway], ranks[last] = ranks[last], ranks[runaway]
    members[runaway] = RUNAWAY_TEAM
    return tuple(
        DemoUser(
            id=uid,
            team=team,
            weight=rank**-ZIPF_EXPONENT,
            sends_team=uid == RUNAWAY_USER or rng.random() >= NO_TEAM_ATTR_RATE,
        )
        for uid, team, rank in zip(ids, members, ranks, strict=True)
    )


USERS: tuple[DemoUser, ...] = _build_users()

# Users whose spans carry no `team.id`: the demo config maps them (`attribution.user_teams`).
DEMO_USER_TEAMS: dict[str, str] = {u.id: u.team for u in USERS if not u.sends_team}
