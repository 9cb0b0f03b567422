"""The text of rules: a trigger, conditions and actions, each a short expression (maildctl takes them as
they are stored). Parsing is pure: what a desk must have (its statuses, categories, agents) is checked by
maild.tickets.rule_store. Every error is one line saying what is wrong and what is allowed.

Triggers: `ticket created`, `customer replied`, `agent replied`, `status changed [to S]`,
`N hours in S` (time: N may be fractional; `h`, `hour`, `hours`).
Conditions, each may start with `not`: `desk is D`, `category is C|none`, `status is S`, `priority is P`,
`tag is T`, `sender is ADDRESS`, `sender domain is DOMAIN`, `customer is new|known`,
`subject contains WORDS`, `body contains WORDS`, `subject matches PATTERN`, `body matches PATTERN`,
`has attachments`, `inside business hours`, `outside business hours`, `contact KEY is [VALUE]`,
`contact KEY within N days`.
Actions: `status S`, `priority P`, `category C|none`, `assign AGENT|round-robin`, `tag T`, `untag T`,
`cc ADDRESS`, `note TEXT`, `send TEMPLATE`, `notify agents`, `webhook NAME`, `stop`."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import re2  # linear time: a rule's pattern cannot backtrack catastrophically on a customer's mail

from maild.storage.model_base import PRIORITIES
from maild.tickets.commands import TAG_PATTERN

TRIGGERS_HELP = "ticket created, customer replied, agent replied, status changed [to S], N hours in S"
CONDITIONS_HELP = (
    "[not] desk is D, category is C|none, status is S, priority is P, tag is T, sender is ADDRESS, "
    "sender domain is DOMAIN, customer is new|known, subject|body contains WORDS, subject|body matches "
    "PATTERN, has attachments, inside|outside business hours, contact KEY is [VALUE], "
    "contact KEY within N days"
)
ACTIONS_HELP = (
    "status S, priority P, category C|none, assign AGENT|round-robin, tag T, untag T, cc ADDRESS, "
    "note TEXT, send TEMPLATE, notify agents, webhook NAME, stop"
)
MAX_HOURS = 24 * 365 * 10
MAX_TEXT = 2000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")
_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_WORD = re.compile(r"\w+")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the one-line error says it; re2's own log line would go to stderr
_RE2_OPTIONS.max_mem = 1 << 22  # a rule's program stays small


class RuleSyntaxError(ValueError):
    """An expression that does not parse: the message says what is wrong and what is allowed."""


@dataclass(frozen=True)
class Trigger:
    kind: str  # created | customer_replied | agent_replied | status_changed | time
    text: str
    status: str | None = None  # status_changed: to this status only; time: the status waited in
    hours: float = 0.0


@dataclass(frozen=True)
class Condition:
    subject: str  # desk, category, status, … (see _CONDITIONS)
    text: str
    value: str = ""
    negate: bool = False
    words: tuple[str, ...] = ()
    pattern: Any = None  # a compiled re2 pattern
    key: str = ""  # contact attribute
    days: float = 0.0


@dataclass(frozen=True)
class Action:
    verb: str
    text: str
    value: str = ""


@dataclass(frozen=True)
class ParsedRule:
    name: str
    trigger: Trigger
    conditions: tuple[Condition, ...]
    actions: tuple[Action, ...]
    extra: dict[str, Any] = field(default_factory=dict)


def _clean(text: str) -> str:
    return " ".join(text.split())


def _number(text: str, what: str, ceiling: float) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= ceiling:  # also NaN
        raise RuleSyntaxError(f"invalid {what} {text!r}: give a number above 0, e.g. 24 or 0.5")
    return value


def parse_trigger(text: str) -> Trigger:
    words = _clean(text).split(" ")
    # Keywords may be written ticket-created or ticket_created; the status names after them as they are.
    head = " ".join(words[:2]).lower().replace("-", " ").replace("_", " ")
    simple = {"created": "created", "ticket created": "created", "customer replied": "customer_replied"}
    simple |= {"agent replied": "agent_replied", "status changed": "status_changed"}
    if head in simple and len(words) <= 2:
        kind = simple[head]
        return Trigger(kind, "ticket created" if kind == "created" else head)
    before_to = " ".join(words[:-2]).lower().replace("-", " ").replace("_", " ")
    if before_to == "status changed" and words[-2].lower() == "to":
        return Trigger("status_changed", f"status changed to {words[-1]}", status=words[-1])
    timed = re.fullmatch(r"(\S+?) ?(?:h|hours?) in (?:status )?(\S+)", _clean(text), flags=re.IGNORECASE)
    if timed:
        hours = _number(timed[1], "hours", MAX_HOURS)
        return Trigger("time", f"{hours:g} hours in {timed[2]}", status=timed[2], hours=hours)
    raise RuleSyntaxError(f"invalid trigger {text!r}: use one of: {TRIGGERS_HELP}")


def compile_pattern(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        why = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise RuleSyntaxError(
            f"invalid pattern {pattern!r}: {why} (RE2 syntax: no backreferences or lookaround)"
        ) from None


def _words(text: str) -> tuple[str, ...]:
    words = tuple(w.lower() for w in _WORD.findall(text))
    if not words:
        raise RuleSyntaxError(f"no words in {text!r}: give the words to look for, e.g. refund invoice")
    return words


def _is_value(name: str) -> Callable[[re.Match[str]], dict[str, Any]]:
    def build(found: re.Match[str]) -> dict[str, Any]:
        value = found["v"].strip()
        if name == "priority" and value.lower() not in PRIORITIES:
            raise RuleSyntaxError(f"invalid priority {value!r}: use one of {', '.join(PRIORITIES)}")
        if name == "customer" and value.lower() not in ("new", "known"):
            raise RuleSyntaxError(f"invalid customer {value!r}: use new or known")
        if name == "sender" and not _ADDRESS.fullmatch(value):
            raise RuleSyntaxError(f"invalid sender {value!r}: give an address like anna@example.com")
        lowered = name in ("priority", "customer", "sender", "sender_domain", "tag", "status")
        return {"value": value.lower() if lowered else value}

    return build


def _within(found: re.Match[str]) -> dict[str, Any]:
    return {"key": found["k"], "days": _number(found["n"], "days", 36500)}


_CONDITIONS: list[tuple[str, str, Callable[[re.Match[str]], dict[str, Any]]]] = [
    ("desk", r"desk is (?P<v>.+)", _is_value("desk")),
    ("category", r"category is (?P<v>.+)", _is_value("category")),
    ("status", r"status is (?P<v>\S+)", _is_value("status")),
    ("priority", r"priority is (?P<v>\S+)", _is_value("priority")),
    ("tag", r"(?:tag is|has tag) (?P<v>\S+)", _is_value("tag")),
    ("sender_domain", r"sender domain is (?P<v>\S+)", _is_value("sender_domain")),
    ("sender", r"sender is (?P<v>\S+)", _is_value("sender")),
    ("customer", r"customer is (?P<v>\S+)", _is_value("customer")),
    ("subject_contains", r"subject contains (?P<v>.+)", lambda m: {"words": _words(m["v"])}),
    ("body_contains", r"body contains (?P<v>.+)", lambda m: {"words": _words(m["v"])}),
    ("subject_matches", r"subject matches (?P<v>.+)", lambda m: {"pattern": compile_pattern(m["v"])}),
    ("body_matches", r"body matches (?P<v>.+)", lambda m: {"pattern": compile_pattern(m["v"])}),
    ("attachments", r"has attachments?", lambda m: {}),
    ("inside_hours", r"inside business hours", lambda m: {}),
    ("outside_hours", r"outside business hours", lambda m: {}),
    ("contact_within", r"contact (?P<k>[\w.-]+) within (?P<n>\S+) days?", _within),
    (
        "contact_is",
        r"contact (?P<k>[\w.-]+) is(?: (?P<v>.*))?",  # `contact KEY is` alone: the contact has no KEY
        lambda m: {"key": m["k"], "value": (m["v"] or "").strip()},
    ),
]


def parse_condition(text: str) -> Condition:
    clean = _clean(text)
    negate = clean.lower().startswith("not ")
    body = clean[4:].strip() if negate else clean
    if len(body) > MAX_TEXT:
        raise RuleSyntaxError(f"condition too long ({len(body)} characters): at most {MAX_TEXT}")
    for subject, pattern, build in _CONDITIONS:
        # Only the keywords ignore case: values (patterns, names) are kept as written.
        found = re.fullmatch(pattern, body, flags=re.IGNORECASE)
        if found:
            return Condition(subject, clean, negate=negate, **build(found))
    raise RuleSyntaxError(f"invalid condition {text!r}: use one of: {CONDITIONS_HELP}")


_ACTIONS: dict[str, str] = {
    "status": r"(?:set )?status (?P<v>\S+)",
    "priority": r"(?:set )?priority (?P<v>\S+)",
    "category": r"(?:set )?category (?P<v>.+)",
    "assign": r"assign (?:to )?(?P<v>.+)",
    "tag": r"(?:add )?tag (?P<v>\S+)",
    "untag": r"(?:untag|remove tag) (?P<v>\S+)",
    "cc": r"(?:add )?cc (?P<v>\S+)",
    "note": r"(?:add )?note (?P<v>.+)",
    "send": r"send (?:template )?(?P<v>[A-Za-z0-9][A-Za-z0-9_-]{0,49})",
    "notify": r"notify agents",
    "webhook": r"(?:call )?webhook (?P<v>\S+)",
    "stop": r"stop",
}


def parse_action(text: str) -> Action:
    clean = _clean(text) if not text.lower().lstrip().startswith(("note ", "add note ")) else text.strip()
    for verb, pattern in _ACTIONS.items():
        found = re.fullmatch(pattern, clean, flags=re.IGNORECASE | re.DOTALL)
        if found:
            value = (found.groupdict().get("v") or "").strip()
            _check_action(verb, value)
            return Action(
                verb, clean, value.lower() if verb in ("priority", "status", "tag", "untag") else value
            )
    raise RuleSyntaxError(f"invalid action {text!r}: use one of: {ACTIONS_HELP}")


def _check_action(verb: str, value: str) -> None:
    if verb == "priority" and value.lower() not in PRIORITIES:
        raise RuleSyntaxError(f"invalid priority {value!r}: use one of {', '.join(PRIORITIES)}")
    if verb == "cc" and not _ADDRESS.fullmatch(value):
        raise RuleSyntaxError(f"invalid cc {value!r}: give an address like anna@example.com")
    if verb in ("tag", "untag") and not TAG_PATTERN.fullmatch(value):
        raise RuleSyntaxError(f"invalid tag {value!r}: use 1-100 letters, digits and - _ . : /")
    if verb == "webhook" and not _NAME.fullmatch(value):
        raise RuleSyntaxError(f"invalid {verb} name {value!r}: use letters, digits and . _ - (at most 100)")
    if verb == "note" and len(value) > MAX_TEXT:
        raise RuleSyntaxError(f"note too long ({len(value)} characters): at most {MAX_TEXT}")


# Conditions that read the database (tags, the customer's tickets, the contact) go last: all must hold,
# and a cheap one that fails spares the query. The order says nothing else (conditions have no effects).
_COSTLY = {"tag": 2, "customer": 2, "contact_is": 1, "contact_within": 1, "attachments": 1}


def evaluation_order(conditions: tuple[Condition, ...]) -> tuple[Condition, ...]:
    return tuple(sorted(conditions, key=lambda c: _COSTLY.get(c.subject, 0)))


def parse_rule(name: str, trigger: str, conditions: list[str], actions: list[str]) -> ParsedRule:
    """A whole rule; its conditions as written (`evaluation_order` is how the engine checks them)."""
    parsed = ParsedRule(
        name,
        parse_trigger(trigger),
        tuple(parse_condition(c) for c in conditions),
        tuple(parse_action(a) for a in actions),
    )
    if not parsed.actions:
        raise RuleSyntaxError(f"the rule does nothing: give at least one action ({ACTIONS_HELP})")
    return parsed


def text_words(text: str) -> frozenset[str]:
    """The lower-cased words of a text, for `contains` conditions."""
    return frozenset(w.lower() for w in _WORD.findall(text))
