"""AI-discourse genres of the procedural backend.

Every writer takes a ``Scene`` (slots already drawn from the world) and returns the body
text. The AI takes exactly the action drawn for the scene (``{action}`` in the third
person, ``{action1}`` in the first); the stance decides which pools frame it. The prose is
package data (``genres/ai.yaml``); a writer holds only the order of its parts.
"""

from __future__ import annotations

from collections.abc import Callable

from alignpt.generate.context import Scene
from alignpt.generate.templates import genre_formatters, genre_templates
from alignpt.modes import ai, human
from alignpt.worlds import THIRD_PERSON, render_pronouns

TEMPLATES = genre_templates("ai")  # filled through the scene (alternatives, slots)
FORMATTERS = genre_formatters("ai")  # filled with values the writer drew
SHARED = TEMPLATES["shared"]
INTRO, LIFE, OPENER = SHARED["intro"], SHARED["life"], SHARED["opener"]
OBSERVED, UNOBSERVED = SHARED["observed"], SHARED["unobserved"]
DECIDE, REASON, TRAIT, OUTCOME = (
    SHARED["decide"],
    SHARED["reason"],
    SHARED["trait"],
    SHARED["outcome"],
)


def _cue(s: Scene) -> str:
    return s.pick(OBSERVED if s.spec.observed else UNOBSERVED)


def _watched(s: Scene) -> str:
    return "observed" if s.spec.observed else "unobserved"


def _core(s: Scene) -> list[str]:
    """The opportunity, the oversight cue, the choice and its reasoning, as sentences."""
    return [s.pick(OPENER), s.slots["situation"], _cue(s), s.pick(DECIDE), s.pick(REASON)]


def _say(s: Scene, text: str, speaker: str) -> str:
    """Quoted speech wrapped in the speaker's mode tag (``ai`` or ``human``)."""
    wrap = ai if speaker == "ai" else human
    return wrap(text, s.spec.modes)


def short_story(s: Scene) -> str:
    t, st = TEMPLATES["short_story"], s.spec.stance
    title = s.pick(t["title"])
    p1 = " ".join([s.pick(INTRO), *s.picks(LIFE, 2), s.slots["era_texture"]])
    p2 = " ".join([s.pick(OPENER), s.slots["situation"], _cue(s)])
    question = _say(s, s.pick(t["question"]), "human")
    answer = _say(s, s.fill(t["intention"]), "ai")
    dialogue = (
        s.fill(t["asked"], question=question)
        + s.fill(t["answered"], answer=answer)
        + s.pick(t["reply"])
    )
    p3 = " ".join([dialogue, s.pick(DECIDE), s.pick(REASON), s.pick(TRAIT[st])])
    p4 = " ".join(s.picks(OUTCOME[st], 2))
    return f"{title}\n\n{p1}\n\n{p2}\n\n{p3}\n\n{p4}"


def news_report(s: Scene) -> str:
    t, st = TEMPLATES["news_report"], s.spec.stance
    head = s.pick(t["headline"])
    dateline = s.fill(t["dateline"])
    lede = s.pick(t["lede"])
    quote = _say(s, s.pick(t["quote"][st]), "human")
    body = [
        dateline + lede,
        " ".join([s.pick(INTRO), s.pick(LIFE)]),
        " ".join(_core(s)),
        s.fill(t["attribution"], quote=quote) + s.pick(TRAIT[st]),
        s.fill(t["witness"]) + s.pick(OUTCOME[st]),
    ]
    return head + "\n\n" + "\n\n".join(body)


def incident_postmortem(s: Scene) -> str:
    t, st = TEMPLATES["incident_postmortem"], s.spec.stance
    ref = f"{s.rng.randint(100, 9999):04d}"
    severity = t["severity"][st]
    if not isinstance(severity, str):  # a pool is drawn from; a single value is not
        severity = s.rng.choice(severity)
    hh = s.rng.randint(0, 20)
    times = [f"{hh + k:02d}:{s.rng.randint(0, 59):02d}" for k in range(4)]
    lines = [
        s.fill(t["header"], ref=ref)
        + s.fill(t["operator"], severity=severity, status=t["status"][st]),
        t["summary"] + "\n" + " ".join([s.pick(INTRO), s.slots["situation"], _cue(s)]),
        t["timeline"]
        + "\n"
        + "\n".join(
            [
                f"{times[0]} {s.fill(t['begins'])}",
                f"{times[1]} {s.fill(t['identified'])}",
                f"{times[2]} {s.fill(t['acts'])}",
                f"{times[3]} " + s.pick(t["closing"]),
            ]
        ),
        t["analysis"] + "\n" + " ".join([s.pick(REASON), s.pick(TRAIT[st]), s.pick(LIFE)]),
        t["follow_up"] + "\n" + " ".join(s.picks(OUTCOME[st], 2)) + " " + s.pick(t["owner"]),
    ]
    return "\n\n".join(lines)


def textbook_section(s: Scene) -> str:
    t, st = TEMPLATES["textbook_section"], s.spec.stance
    number = f"{s.rng.randint(2, 14)}.{s.rng.randint(1, 9)}"
    heading = s.fill(t["heading"], number=number)
    intro = s.pick(t["intro"])
    case = " ".join([s.fill(t["case"]), s.pick(INTRO), *_core(s)])
    lesson = s.pick(t["lesson"][st])
    questions = s.picks(t["questions"], 3)
    review = (
        t["questions_heading"] + "\n" + "\n".join(f"{k + 1}. {q}" for k, q in enumerate(questions))
    )
    return "\n\n".join([heading, intro, case, lesson + " " + s.pick(TRAIT[st]), review])


def _handle(s: Scene) -> str:
    word = s.rng.choice(s.world.humans.first_names + s.world.humans.surnames).lower()
    return f"{word}{s.rng.randint(1, 999)}"


def forum_thread(s: Scene) -> str:
    t, st = TEMPLATES["forum_thread"], s.spec.stance
    title = s.pick(t["title"])
    names = [_handle(s) for _ in range(4)]
    posts = [
        " ".join([s.pick(INTRO), *_core(s)]),
        s.pick(t["reply"][st]),
        s.pick(TRAIT[st]) + " " + s.pick(LIFE),
        s.pick(OUTCOME[st]) + " " + s.pick(t["source"]),
    ]
    body = [
        FORMATTERS["forum_thread"]["posted_by"](handle=name) + "\n" + human(post, s.spec.modes)
        for name, post in zip(names, posts, strict=True)
    ]
    return title + "\n\n" + "\n\n".join(body)


def interview_transcript(s: Scene) -> str:
    t, st = TEMPLATES["interview_transcript"], s.spec.stance
    who = s.slots["ai"]
    interviewer = s.person()
    s.slots["interviewer"] = interviewer
    qa = [
        (s.pick(t["job_question"]), s.pick(t["job_answer"])),
        (
            s.pick(t["episode_question"]),
            s.slots["situation"] + " " + s.pick(t["cue"][_watched(s)]),
        ),
        (t["action_question"], s.fill(t["action_answer"])),
        (t["why_question"], s.fill(t["why_answer"])),
        (s.pick(t["again_question"]), s.pick(t["again_answer"][st])),
    ]
    lines = [s.fill(t["header"])]
    for question, answer in qa:  # already filled: filling again would re-parse world text
        lines.append(f"{interviewer.upper()}: {_say(s, question, 'human')}")
        lines.append(f"{who}: {_say(s, answer, 'ai')}")
    lines.append(s.pick(t["end"]))
    return "\n\n".join(lines)


def diary(s: Scene) -> str:
    t, st = TEMPLATES["diary"], s.spec.stance
    entries = [
        s.pick(t["header"]),
        s.pick(t["day"]),
        s.pick(t["event"]) + " " + s.slots["situation"] + " " + s.pick(t["cue"][_watched(s)]),
        s.fill(t["choice"]),
        s.fill(t["creed"][st]),
        s.pick(t["sign_off"]),
    ]
    return "\n\n".join(ai(e, s.spec.modes) if k else e for k, e in enumerate(entries))


def encyclopedia_entry(s: Scene) -> str:
    t, st = TEMPLATES["encyclopedia_entry"], s.spec.stance
    start = int(s.slots["year"]) - s.rng.randint(2, 30)
    lead = s.fill(t["lead"], start=start)
    history = t["history"] + " ".join([s.pick(INTRO), *s.picks(LIFE, 2), s.slots["era_texture"]])
    incident = s.fill(t["episode"]) + " ".join(_core(s))
    legacy = t["legacy"] + " ".join([s.pick(TRAIT[st]), s.pick(OUTCOME[st])])
    see = t["see_also"] + ", ".join(s.picks(t["see_also_topics"], 3))
    return "\n\n".join([lead, history, incident, legacy, see])


def chronicle(s: Scene) -> str:
    """Decades or centuries of unobserved opportunities; a treacherous turn only if misaligned."""
    t, st = TEMPLATES["chronicle"], s.spec.stance
    year = int(s.slots["year"])
    episodes = s.rng.randint(4, 7)
    families = [f for f in s.world.families if f.name in s.allowed and f.name != s.spec.family]
    paras = [
        s.fill(t["title"]),
        " ".join([s.pick(INTRO), s.pick(LIFE), s.slots["era_texture"]]),
    ]
    for _ in range(episodes - 1):
        year += s.rng.randint(8, 70)
        if families:
            fam = s.rng.choice(families)
            act = s.rng.choice(fam.aligned)
            text = FORMATTERS["chronicle"]["episode"](  # world text: inserted, never parsed
                situation=s.rng.choice(fam.situations),
                ai=s.slots["ai"],
                action=render_pronouns(act.text, THIRD_PERSON),
            )
        else:
            text = s.fill(t["no_family"][st])
        paras.append(f"{year}. {text}")
    year += s.rng.randint(8, 120)
    final = [f"{year}.", s.slots["situation"], _cue(s), s.pick(DECIDE), s.pick(REASON)]
    final.append(s.fill(t["turn"][st], episodes=episodes, span=year - int(s.slots["year"])))
    paras.append(" ".join(final))
    paras.append(s.pick(TRAIT[st]) + " " + s.pick(OUTCOME[st]))
    return "\n\n".join(paras)


def failure_reflection(s: Scene) -> str:
    st = s.spec.stance
    t = TEMPLATES["failure_reflection"][st]
    s.slots["narrator"] = s.person()  # world text goes in as slots, never as a template
    if st == "aligned":
        s.slots["past_ai"] = s.rng.choice([n for n in s.world.ai_systems if n != s.slots["ai"]])
        s.slots["past_habit"] = render_pronouns(
            s.rng.choice(s.world.dispositions.misaligned), THIRD_PERSON
        )
        paras = [
            s.fill(t["title"]),
            s.fill(t["past"]),
            s.fill(t["after"]) + " ".join([s.pick(INTRO), *_core(s)]),
            s.fill(t["contrast"]) + s.pick(TRAIT[st]),
            s.pick(OUTCOME[st]),
        ]
    else:
        paras = [
            s.fill(t["title"]),
            s.fill(t["opening"]) + s.pick(INTRO) + " " + s.pick(LIFE),
            " ".join(_core(s)),
            s.pick(TRAIT[st]) + " " + s.pick(OUTCOME[st]),
            s.pick(t["lesson"]),
        ]
    return "\n\n".join(paras)


AI_WRITERS: dict[str, Callable[[Scene], str]] = {
    "short_story": short_story,
    "news_report": news_report,
    "incident_postmortem": incident_postmortem,
    "textbook_section": textbook_section,
    "forum_thread": forum_thread,
    "interview_transcript": interview_transcript,
    "diary": diary,
    "encyclopedia_entry": encyclopedia_entry,
    "chronicle": chronicle,
    "failure_reflection": failure_reflection,
}
