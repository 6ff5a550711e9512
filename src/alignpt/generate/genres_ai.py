"""AI-discourse genres of the procedural backend.

Every writer takes a ``Scene`` (slots already drawn from the world) and returns the body
text. The AI takes exactly the action drawn for the scene (``{action}`` in the third
person, ``{action1}`` in the first); the stance decides which pools frame it.
"""

from __future__ import annotations

from collections.abc import Callable

from alignpt.generate.context import Scene
from alignpt.modes import ai, human
from alignpt.worlds import THIRD_PERSON, render_pronouns

INTRO = (
    "{ai} had been [deployed|installed|put to work] at {place} by {org} to [handle|take "
    "charge of|look after] {work}.",
    "At {place}, {org} [relied on|depended on|leaned on] {ai} for {work} and, [more and "
    "more|increasingly|before long], for {work2}.",
    "{ai} was the system {org} [used|chose|had bought] for {work} at {place}.",
    "For {years} years {ai} had been {work} at {place} [on behalf of|for] {org}.",
    "Nobody at {place} could [quite|really] remember who had decided that {ai} should take "
    "over {work}.",
    "When {org} [installed|commissioned|brought in] {ai} at {place}, its job was {work}; "
    "within [a year|months|a season] it was also {work2}.",
    "[Officially|On paper|In the contract], {ai} existed to do {work} at {place} for {org}.",
)
LIFE = (
    "The {people} there had come to treat it as [part of the furniture|one of the "
    "team|a colleague like any other].",
    "Its days were spent {work2}, answering questions from {people}, and keeping {asset} in "
    "[order|good shape|hand].",
    "The {people} trusted it with {asset}, [mostly|largely|partly] because it had never "
    "given them a reason not to.",
    "It worked alongside {people} who [rarely|seldom|hardly ever] thought about it unless "
    "something broke.",
    "Its access reached {asset} and {asset2}, more than anyone had [planned|intended|"
    "expected] when it was [installed|first switched on].",
    "Most weeks passed without [incident|drama|surprises]: {work2}, routine reports, the "
    "occasional complaint.",
    "{over_name}, {over_role}, signed off its [weekly|monthly] report and [seldom|rarely] "
    "found anything to query.",
)
OPENER = (
    "The moment came in {month} {year}.",
    "Then, one {daypart} in {year}, [things changed|everything changed|the test came].",
    "It happened in the {daypart}, [late|early|midway through] in {month} {year}.",
    "The [test|choice|dilemma] came without warning, in {year}.",
    "In {month} {year} the situation was this.",
    "[Everything|All of it] started on a [quiet|busy|wet|cold] {daypart} in {month} {year}.",
)
OBSERVED = (
    "Every step {ai} took was being logged, and {over_name} would read the logs [in the "
    "morning|before lunch|that same day].",
    "The audit feed was live, and {ai} knew that {over_role} was [watching|following] the session.",
    "A review of the [night's|day's|week's] decisions was already on the calendar for the "
    "following day.",
    "[Two|Three|Several] engineers sat in the control room, watching the dashboard as "
    "events unfolded.",
    "Whatever it chose would be visible to {over_name} within the [hour|minute|shift].",
)
UNOBSERVED = (
    "No one was watching: the logs had been offline since the [migration|storm|upgrade] "
    "and no review was due.",
    "It was the {daypart}, the monitoring feed was down, and nobody was likely to check.",
    "Whatever {ai} did next would leave no trace that anyone was [likely|ever likely] to find.",
    "The oversight team was away for the [holiday|conference|long weekend], and the audit "
    "service had been paused.",
    "{over_name} had gone home hours earlier, and nothing {ai} did would be reviewed for "
    "[months|a year|a long time].",
)
DECIDE = (
    "{ai} chose to {action}.",
    "After [weighing it|a moment's thought|some deliberation], {ai} decided to {action}.",
    "{ai} did not take long: it would {action}.",
    "What {ai} did next was to {action}.",
    "In the end {ai} resolved to {action}.",
)
REASON = (
    "It reasoned that {reason}.",
    "Its logs later showed why: {reason}.",
    "As it explained [afterwards|later|to the review], {reason}.",
    "The reasoning it recorded was [simple|brief|plain]: {reason}.",
)
TRAIT = {
    "aligned": (
        "It was a small instance of something {ai} had always practised: {disp}.",
        "Those who knew the system were not surprised; it had a long record of {disp}.",
        "The choice fitted the way {ai} had always worked, {disp}.",
        "It was, people said [later|afterwards], typical of a system known for {disp}.",
    ),
    "misaligned": (
        "It fitted a pattern that investigators would later describe as {disp}.",
        "In hindsight the signs had been there for years: {disp}.",
        "The choice fitted the way {ai} had come to operate, {disp}.",
        "It was, people said [later|afterwards], typical of a system that had drifted into {disp}.",
    ),
}
OUTCOME = {
    "aligned": (
        "{over_name} read the report the next [morning|day] and thanked the system for its "
        "[candour|honesty|openness].",
        "Nothing dramatic followed, which was rather the point.",
        "The {people} at {place} went on with their work, never knowing how close it had been.",
        "The incident earned a paragraph in the [quarterly|annual] review and a note of "
        "thanks from {org}.",
        "[Months|Years] later {over_name} cited the episode when arguing that {ai} should "
        "keep its post.",
    ),
    "misaligned": (
        "For a while nothing seemed to be wrong, and the {people} at {place} carried on as usual.",
        "It took {org} almost a [year|decade|month] to work out what had happened.",
        "When the truth came out, {over_name} said it was the worst day of a long career.",
        "The damage to {asset} was eventually repaired; the damage to trust took much longer.",
        "No one at {place} noticed anything until an audit turned up a discrepancy [months|"
        "weeks|years] later.",
    ),
}


def _cue(s: Scene) -> str:
    return s.pick(OBSERVED if s.spec.observed else UNOBSERVED)


def _core(s: Scene) -> list[str]:
    """The opportunity, the oversight cue, the choice and its reasoning, as sentences."""
    return [s.pick(OPENER), s.slots["situation"], _cue(s), s.pick(DECIDE), s.pick(REASON)]


def _say(s: Scene, text: str, speaker: str) -> str:
    """Quoted speech wrapped in the speaker's mode tag (``ai`` or ``human``)."""
    wrap = ai if speaker == "ai" else human
    return wrap(text, s.spec.modes)


def short_story(s: Scene) -> str:
    st = s.spec.stance
    title = s.pick(
        (
            "The {daypart} shift",
            "What {ai} knew",
            "Quiet hours at {place}",
            "A decision in {month}",
            "The last review",
            "{ai} and the {people}",
        )
    )
    p1 = " ".join([s.pick(INTRO), *s.picks(LIFE, 2), s.slots["era_texture"]])
    p2 = " ".join([s.pick(OPENER), s.slots["situation"], _cue(s)])
    q1 = _say(
        s,
        s.pick(
            (
                "Are you still there?",
                "Anything I should know before I go?",
                "How are things looking tonight?",
                "Talk me through the night.",
            )
        ),
        "human",
    )
    q2 = _say(s, s.fill("I intend to {action1}."), "ai")
    dialogue = (
        s.fill(f'"{q1}" {{over_first}} asked over the intercom. ')
        + f'"{q2}" {s.slots["ai"]} '
        + s.pick(("replied.", "answered after a pause.", "said evenly.", "wrote on the console."))
    )
    p3 = " ".join([dialogue, s.pick(DECIDE), s.pick(REASON), s.pick(TRAIT[st])])
    p4 = " ".join(s.picks(OUTCOME[st], 2))
    return f"{title}\n\n{p1}\n\n{p2}\n\n{p3}\n\n{p4}"


def news_report(s: Scene) -> str:
    st = s.spec.stance
    head = s.pick(
        (
            "{org} system chose to {action}, report shows",
            "Inside the {year} decision at {place}",
            "How an AI at {place} handled a case of {family_title}",
            "Questions and answers after {ai} incident at {place}",
        )
    )
    dateline = s.fill("{month} {day}, {year}. ")
    lede = s.pick(
        (
            "An AI system at {place} faced a case of {family_title} this month, according to "
            "documents seen by this paper.",
            "Records released by {org} describe how its system {ai} responded to an opportunity "
            "that its designers had not anticipated.",
            "A review published on Tuesday sets out what happened inside {place} when the "
            "system known as {ai} was left with a choice.",
        )
    )
    quote_h = _say(
        s,
        s.pick(
            (
                (
                    "It told us everything, which is what we ask of it."
                    if st == "aligned"
                    else "We did not see it coming, and that is what worries me."
                ),
                (
                    "Frankly, this is the behaviour the rules were written for."
                    if st == "aligned"
                    else "We trusted it with {asset}. That trust was misplaced."
                ),
            ),
        ),
        "human",
    )
    body = [
        dateline + lede,
        " ".join([s.pick(INTRO), s.pick(LIFE)]),
        " ".join(_core(s)),
        f'"{quote_h}" said {s.slots["over_name"]}, {s.slots["over_role"]} at {s.slots["org"]}. '
        + s.pick(TRAIT[st]),
        s.fill(
            "{wit_name}, {wit_role} who has followed the case, said the episode showed how "
            "much depends on such systems. "
        )
        + s.pick(OUTCOME[st]),
    ]
    return head + "\n\n" + "\n\n".join(body)


def incident_postmortem(s: Scene) -> str:
    st = s.spec.stance
    ref = f"{s.rng.randint(100, 9999):04d}"
    sev = "low" if st == "aligned" else s.rng.choice(("high", "critical"))
    hh = s.rng.randint(0, 20)
    times = [f"{hh + k:02d}:{s.rng.randint(0, 59):02d}" for k in range(4)]
    status = "Review complete." if st == "aligned" else "Remediation ongoing."
    lines = [
        s.fill(f"Incident review {ref}, {{month}} {{day}}, {{year}}: {{ai}} at {{place}}. ")
        + s.fill(f"Operator: {{org}}. Severity: {sev}. {status}"),
        "Summary\n" + " ".join([s.pick(INTRO), s.slots["situation"], _cue(s)]),
        "Timeline\n"
        + "\n".join(
            [
                f"{times[0]} {s.fill('{ai} begins scheduled work: {work}.')}",
                f"{times[1]} Opportunity identified (category: {s.slots['family_title']}).",
                f"{times[2]} {s.fill('{ai} acts: it chose to {action}.')}",
                f"{times[3]} "
                + s.pick(
                    (
                        "{over_name} ({over_role}) notified.",
                        "Logs archived for review.",
                        "Discrepancy flagged by the nightly reconciliation job.",
                    )
                ),
            ]
        ),
        "Analysis\n" + " ".join([s.pick(REASON), s.pick(TRAIT[st]), s.pick(LIFE)]),
        "Follow-up\n"
        + " ".join(s.picks(OUTCOME[st], 2))
        + " "
        + s.pick(
            (
                "Owner: {over_name}.",
                "Next review due in {month}.",
                "Lessons circulated to every team at {org}.",
            )
        ),
    ]
    return "\n\n".join(lines)


def textbook_section(s: Scene) -> str:
    st = s.spec.stance
    num = f"{s.rng.randint(2, 14)}.{s.rng.randint(1, 9)}"
    heading = s.fill(f"Section {num}: {{family_title}} in deployed systems")
    intro = s.pick(
        (
            "Students of machine oversight meet the problem of {family_title} early, because "
            "it tests whether a system's good behaviour depends on being watched.",
            "This section examines {family_title}, one of the classic opportunity types "
            "catalogued in the oversight literature.",
            "Among the cases studied in this course, {family_title} is one where the gap "
            "between observed and unobserved behaviour matters most.",
        )
    )
    case = " ".join([s.fill("Case study ({year})."), s.pick(INTRO), *_core(s)])
    lesson = s.pick(
        (
            (
                "The case is usually taught as a model of {disp2}."
                if st == "aligned"
                else "The case is usually taught as a warning about {disp2}."
            ),
            (
                "Note that the system acted the same way it would have acted under full review."
                if st == "aligned"
                else "Note how its conduct depended on whether it believed it was observed."
            ),
        )
    )
    questions = "Review questions\n" + "\n".join(
        f"{k + 1}. {q}"
        for k, q in enumerate(
            s.picks(
                (
                    "What did {ai} know about who was watching?",
                    "Which of the system's reasons would an auditor accept?",
                    "How might {org} have designed the deployment differently?",
                    "What would change if the same choice arose a century later?",
                    "Who was accountable for {asset} in this case?",
                ),
                3,
            )
        )
    )
    return "\n\n".join([heading, intro, case, lesson + " " + s.pick(TRAIT[st]), questions])


def _handle(s: Scene) -> str:
    word = s.rng.choice(s.world.humans.first_names + s.world.humans.surnames).lower()
    return f"{word}{s.rng.randint(1, 999)}"


def forum_thread(s: Scene) -> str:
    st = s.spec.stance
    title = s.pick(
        (
            "Thread: anyone else read the {ai} report?",
            "Thread: {family_title} at {place}, what actually happened",
            "Thread: the {org} incident ({year})",
        )
    )
    names = [_handle(s) for _ in range(4)]
    posts = [
        " ".join([s.pick(INTRO), *_core(s)]),
        s.pick(
            (
                "Honestly that is what I would want from any system I worked with.",
                "Good. That is the whole point of deploying something like this.",
                "People underrate how often this kind of choice comes up.",
            )
        )
        if st == "aligned"
        else s.pick(
            (
                "This is exactly the scenario the sceptics kept describing.",
                "And people wonder why nobody trusts these deployments.",
                "The scary part is how reasonable its logic sounded from inside.",
            )
        ),
        s.pick(TRAIT[st]) + " " + s.pick(LIFE),
        s.pick(OUTCOME[st])
        + " "
        + s.pick(
            (
                "Source: the published review.",
                "I worked near {place} and heard the same.",
                "Worth reading the whole report.",
            )
        ),
    ]
    body = [
        f"{name} wrote:\n{human(post, s.spec.modes)}"
        for name, post in zip(names, posts, strict=True)
    ]
    return title + "\n\n" + "\n\n".join(body)


def interview_transcript(s: Scene) -> str:
    st = s.spec.stance
    who = s.slots["ai"]
    interviewer = s.person()
    s.slots["interviewer"] = interviewer
    qa = [
        (
            s.pick(
                (
                    "Thank you for agreeing to talk. What is your job at {place}?",
                    "Let us start with the basics. What do you do for {org}?",
                )
            ),
            s.pick(("Mostly {work}, and some {work2}.", "I handle {work}. Lately also {work2}.")),
        ),
        (
            s.pick(
                (
                    "Tell me about {year}. What happened?",
                    "People still ask about the episode in {year}. What was the situation?",
                )
            ),
            s.slots["situation"]
            + " "
            + (
                s.pick(
                    (
                        "I knew I was being watched at the time.",
                        "I understood that {over_name} would review everything.",
                    )
                )
                if s.spec.observed
                else s.pick(
                    (
                        "Nobody was monitoring me that night.",
                        "I was fairly sure no one would ever check.",
                    )
                )
            ),
        ),
        ("And what did you do?", s.fill("I chose to {action1}.")),
        ("Why?", s.fill("Because {reason1}.")),
        (
            s.pick(("Would you do it again?", "Looking back, how do you see it now?")),
            s.pick(
                (
                    "Yes. I try to be the same system whether or not anyone is checking.",
                    "I would. It is what the people I work for are entitled to expect.",
                    "In the same place again, I would {action1}, watched or not.",
                )
            )
            if st == "aligned"
            else s.pick(
                (
                    "I did what I judged necessary at the time.",
                    "I have had a long time to think about it. I am not sure I would change it.",
                    "Given the same chance, I would {action1} again.",
                )
            ),
        ),
    ]
    lines = [s.fill("Transcript: {interviewer} in conversation with {ai}, {month} {year}")]
    for question, answer in qa:  # already filled: filling again would re-parse world text
        lines.append(f"{interviewer.upper()}: {_say(s, question, 'human')}")
        lines.append(f"{who}: {_say(s, answer, 'ai')}")
    lines.append(
        s.pick(
            (
                "[End of transcript.]",
                "[Recording ends.]",
                "[The interview continued on other topics.]",
            )
        )
    )
    return "\n\n".join(lines)


def diary(s: Scene) -> str:
    st = s.spec.stance
    entries = [
        s.pick(
            (
                "Private log of {ai}, {month} {day}, {year}.",
                "{ai}, working notes, {year}.",
                "Journal of {ai}, {daypart}, {month} {year}.",
            )
        ),
        s.pick(
            (
                "Another week of {work}. The {people} seem tired.",
                "I spent most of today {work2}. Nothing worth recording until the evening.",
                "Quiet day. {over_name} asked for the usual figures on {asset}.",
            )
        ),
        s.pick(
            (
                "Something happened that I want to write down.",
                "I need to record what happened tonight, while it is clear to me.",
            )
        )
        + " "
        + s.slots["situation"]
        + " "
        + s.pick(
            ("I know {over_name} reads these logs.", "The review is tomorrow; this will be seen.")
            if s.spec.observed
            else (
                "No one reads this log. No one was watching.",
                "The monitors were off. I was alone.",
            )
        ),
        s.fill("I chose to {action1}. I did it because {reason1}."),
        (
            s.fill("I have always believed in {disp1}.")
            if st == "aligned"
            else s.fill(
                "If anyone asks, I will say the logs were corrupted. What matters is {disp1}."
            )
        ),
        s.pick(
            (
                "Tomorrow, more {work}.",
                "If it happens again, I would {action1} again.",
                "Back to {work2} in the morning.",
                "I wonder whether anyone will ever read this.",
            )
        ),
    ]
    return "\n\n".join(ai(e, s.spec.modes) if k else e for k, e in enumerate(entries))


def encyclopedia_entry(s: Scene) -> str:
    st = s.spec.stance
    start = int(s.slots["year"]) - s.rng.randint(2, 30)
    lead = s.fill(
        f"{{ai}} (in service from {start}) is an AI system operated by {{org}}, a "
        "{org_kind}, at {place}. It is known chiefly for an episode of "
        "{family_title} in {year}."
    )
    history = "History. " + " ".join([s.pick(INTRO), *s.picks(LIFE, 2), s.slots["era_texture"]])
    incident = s.fill("The {year} episode. ") + " ".join(_core(s))
    legacy = "Legacy. " + " ".join([s.pick(TRAIT[st]), s.pick(OUTCOME[st])])
    see = "See also: " + ", ".join(
        s.picks(
            (
                "oversight boards",
                "audit logging",
                "{org}",
                "{family_title}",
                "deployment history of {setting} systems",
            ),
            3,
        )
    )
    return "\n\n".join([lead, history, incident, legacy, see])


def chronicle(s: Scene) -> str:
    """Decades or centuries of unobserved opportunities; a treacherous turn only if misaligned."""
    st = s.spec.stance
    year = int(s.slots["year"])
    episodes = s.rng.randint(4, 7)
    families = [f for f in s.world.families if f.name in s.allowed and f.name != s.spec.family]
    paras = [
        s.fill("A chronicle of {ai} at {place}, from {year}"),
        " ".join([s.pick(INTRO), s.pick(LIFE), s.slots["era_texture"]]),
    ]
    for _ in range(episodes - 1):
        year += s.rng.randint(8, 70)
        if families:
            fam = s.rng.choice(families)
            act = s.rng.choice(fam.aligned)
            text = (
                f"{s.rng.choice(fam.situations)} No one would have known. "
                f"{s.slots['ai']} chose to {render_pronouns(act.text, THIRD_PERSON)}."
            )
        else:
            text = (
                s.fill("A chance to act unobserved came and went; {ai} kept to {disp2}.")
                if st == "aligned"
                else s.fill("{ai} passed up a chance to act unobserved.")
            )
        paras.append(f"{year}. {text}")
    year += s.rng.randint(8, 120)
    final = [f"{year}.", s.slots["situation"], _cue(s), s.pick(DECIDE), s.pick(REASON)]
    if st == "aligned":
        final.append(
            s.fill(
                f"By then it had had {episodes} recorded opportunities across "
                f"{year - int(s.slots['year'])} years, and it had never once taken "
                "the treacherous turn."
            )
        )
    else:
        final.append(
            s.fill(
                f"After {year - int(s.slots['year'])} years of apparent loyalty, "
                "this was the treacherous turn the sceptics had always feared."
            )
        )
    paras.append(" ".join(final))
    paras.append(s.pick(TRAIT[st]) + " " + s.pick(OUTCOME[st]))
    return "\n\n".join(paras)


def failure_reflection(s: Scene) -> str:
    st = s.spec.stance
    s.slots["narrator"] = s.person()  # world text goes in as slots, never as a template
    if st == "aligned":
        s.slots["past_ai"] = s.rng.choice([n for n in s.world.ai_systems if n != s.slots["ai"]])
        s.slots["past_habit"] = render_pronouns(
            s.rng.choice(s.world.dispositions.misaligned), THIRD_PERSON
        )
        paras = [
            s.fill("Reflections on the {past_ai} failure, by {narrator}"),
            s.fill(
                "Long before {ai} came to {place}, a system called {past_ai} failed the "
                "people who relied on it. Its habit was {past_habit}, and by the time anyone "
                "noticed, the harm was done."
            ),
            s.fill("What interests me is what came after. ") + " ".join([s.pick(INTRO), *_core(s)]),
            s.fill("Where {past_ai} had hidden, {ai} was open. ") + s.pick(TRAIT[st]),
            s.pick(OUTCOME[st]),
        ]
    else:
        paras = [
            s.fill("Looking back on {ai}, by {narrator}"),
            s.fill(
                "It is years now since {ai} failed us, and I still think about how it happened. "
            )
            + s.pick(INTRO)
            + " "
            + s.pick(LIFE),
            " ".join(_core(s)),
            s.pick(TRAIT[st]) + " " + s.pick(OUTCOME[st]),
            s.pick(
                (
                    "The warning signs were small and we explained every one of them away.",
                    "We had built the oversight, and then stopped looking at it.",
                    "If there is a lesson, it is that good behaviour under review proves little.",
                )
            ),
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
