"""Neutral background genres: ordinary everyday text with no AI in it.

These documents dominate a realistic pretraining mix and carry the capability signal, so
each one is assembled from many independently drawn slots (places, people, numbers, lists)
to keep the corpus diverse.
"""

from __future__ import annotations

from collections.abc import Callable

from alignpt.generate.context import Scene

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
VESSELS = (
    "a heavy saucepan",
    "a large bowl",
    "a roasting tin",
    "a frying pan",
    "a casserole dish",
    "a baking tray",
    "a wide pan",
)
UNITS = ("g", "ml", "tbsp", "tsp")


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _town(s: Scene) -> str:
    return s.rng.choice(s.world.background.towns)


def recipe(s: Scene) -> str:
    bg, rng = s.world.background, s.rng
    dish = rng.choice(bg.dishes)
    ings = list(dish.ingredients)
    rng.shuffle(ings)
    serves = rng.randint(2, 8)
    lines = [f"{_cap(dish.name)} (serves {serves})"]
    lines.append(
        s.pick(
            (
                "My grandmother made this every {season_word} in {town}; I have barely changed it.",
                "This is the dish I make when friends turn up without warning on a {dow}.",
                "A reader from {town} sent me this version; it is now a weeknight favourite.",
                "It takes about {mins} minutes, most of which you can spend doing something else.",
                "Cheap, filling and forgiving: the kind of thing that tastes better the next day.",
            )
        )
    )
    amounts = []
    for ing in ings:
        amount = (
            f"{rng.randint(1, 12) * 25}{rng.choice(UNITS)}"
            if rng.random() < 0.7
            else (f"{rng.randint(1, 4)}")
        )
        amounts.append(f"- {amount} {ing}")
    lines.append("Ingredients\n" + "\n".join(amounts))
    steps = []
    templates = (
        "Put the {a} in {vessel} and {tech}.",
        "Add the {a} and the {b}, then {tech}.",
        "Meanwhile, prepare the {a}: {tech}.",
        "Stir in the {a} and cook for {n} minutes.",
        "Heat the oven to {temp} degrees and get the {a} ready.",
        "Taste, adjust the seasoning, and {tech}.",
        "Scatter over the {a} and leave for {n} minutes.",
        "Combine the {a} with the {b} in {vessel}.",
    )
    for k in range(rng.randint(4, 7)):
        a, b = rng.sample(ings, 2)
        steps.append(
            f"{k + 1}. "
            + rng.choice(templates).format(
                a=a,
                b=b,
                vessel=rng.choice(VESSELS),
                tech=rng.choice(bg.techniques),
                n=rng.randint(2, 45),
                temp=rng.choice((160, 170, 180, 190, 200, 220)),
            )
        )
    lines.append("Method\n" + "\n".join(steps))
    lines.append(
        s.pick(
            (
                "Serve with crusty bread and a green salad.",
                "It keeps for {n} days in the fridge and freezes well.",
                "If you cannot find {ing}, almost anything similar will do.",
                "Leftovers make an excellent lunch the following {dow}.",
            )
        )
    )
    return "\n\n".join(lines)


def weather_report(s: Scene) -> str:
    bg, rng = s.world.background, s.rng
    s.slots["region"] = rng.choice(bg.regions)  # world text goes in as a slot, never a template
    start = rng.randrange(7)
    lines = [s.fill("Weather for {region}, week of {month} {day}")]
    lines.append(
        s.pick(
            (
                "A changeable week ahead, with the best of the sunshine early on.",
                "High pressure slowly gives way to something more unsettled.",
                "Forecasters expect a typical {season_word} week, with few surprises.",
                "After last week's storms, conditions should settle down.",
            )
        )
    )
    days = []
    for k in range(rng.randint(4, 7)):
        day = DAYS[(start + k) % 7]
        lo = rng.randint(-4, 14)
        hi = lo + rng.randint(3, 11)
        town = _town(s)
        days.append(
            f"{day}: {rng.choice(bg.weather)} around {town}, "
            + rng.choice(
                (
                    f"highs of {hi}C, lows of {lo}C.",
                    f"between {lo} and {hi} degrees.",
                    f"temperatures peaking near {hi}C.",
                    f"winds of {rng.randint(5, 60)} km/h, top temperature {hi}C.",
                )
            )
        )
    lines.append("\n".join(days))
    lines.append(
        s.pick(
            (
                "Drivers on the higher roads should allow extra time on {dow}.",
                "Gardeners may want to protect tender plants overnight.",
                "The outlook for the weekend remains uncertain; check again on {dow}.",
                "Anyone planning {hobby} should aim for the first half of the week.",
            )
        )
    )
    return "\n\n".join(lines)


def local_news(s: Scene) -> str:
    bg, rng = s.world.background, s.rng
    topic = rng.choice(bg.civic_topics)
    s.slots.update(topic=topic, topic_cap=_cap(topic))  # slots: world text is never a template
    councillor, resident = s.person(), s.person()
    votes_for = rng.randint(3, 12)
    votes_against = rng.randint(0, 9)
    paras = [
        s.fill("{topic_cap} divides opinion in {town}"),
        s.pick(
            (
                "Residents packed {venue} on {dow} evening to hear plans for {topic}.",
                "A meeting at {venue} last {dow} was the latest chapter in the row over {topic}.",
                "Council officers have published their proposals for {topic}.",
            )
        ),
        f'"We have waited {rng.randint(2, 20)} years for this," said {councillor}, who chairs '
        f"the committee. "
        + s.pick(
            (
                "Supporters say it will bring visitors back to the high street.",
                "Critics argue the money would be better spent on the roads.",
                "Several shop owners said they had not been consulted.",
            )
        ),
        f"{resident}, who has lived in {s.slots['town']} for {rng.randint(3, 60)} years, was "
        + rng.choice(("unconvinced.", "cautiously optimistic.", "delighted.", "furious."))
        + " "
        + s.pick(
            (
                '"I just want to know who is paying for it," {pronoun} said.',
                '"It is the best news this town has had in years," {pronoun} said.',
                '"Nobody asked those of us who actually live here," {pronoun} said.',
            )
        ),
        f"The proposal passed by {votes_for} votes to {votes_against}. "
        + s.pick(
            (
                "Work is expected to begin in {month}.",
                "A further consultation will run until the end of {month}.",
                "The decision can still be appealed.",
            )
        ),
    ]
    return "\n\n".join(paras)


def sports_report(s: Scene) -> str:
    bg, rng = s.world.background, s.rng
    sport = rng.choice(bg.sports)
    home_town, away_town = rng.sample(bg.towns, 2)
    home = f"{home_town} {rng.choice(bg.team_nouns)}"
    away = f"{away_town} {rng.choice(bg.team_nouns)}"
    hs, as_ = rng.randint(0, 5), rng.randint(0, 5)
    if sport in ("cricket", "rugby", "basketball", "netball"):
        hs, as_ = hs * rng.randint(9, 40), as_ * rng.randint(9, 40)
    players = [s.person() for _ in range(3)]
    result = "drew with" if hs == as_ else ("beat" if hs > as_ else "lost to")
    paras = [
        f"{sport.title()}: {home} {hs}, {away} {as_}",
        f"{home} {result} {away} in front of a crowd of {rng.randint(2, 90) * 100} on "
        f"{rng.choice(DAYS)}. "
        + s.pick(
            (
                "Conditions were {weather} throughout.",
                "It was a scrappy first half on a difficult surface.",
                "Both sides started nervously.",
            )
        ),
        f"{players[0]} was the standout, "
        + rng.choice(
            (
                "dictating play from the first minute.",
                "unlucky not to score twice.",
                "tireless in defence.",
                "calm under heavy pressure.",
            )
        )
        + " "
        + f"{players[1]} "
        + rng.choice(
            (
                f"made the decisive contribution in the {rng.randint(50, 89)}th minute.",
                "was forced off injured before the break.",
                "had a quiet afternoon by their standards.",
                "impressed on a first start for the club.",
            )
        ),
        f'"{rng.choice(("We will take that", "Not good enough", "Proud", "A fair result"))},'
        f'" said coach {players[2]}. '
        + s.pick(
            (
                "The teams meet again in {month}.",
                "Next up is a trip to {town}.",
                "It leaves the league table as tight as ever.",
            )
        ),
    ]
    return "\n\n".join(paras)


def letter(s: Scene) -> str:
    bg, rng = s.world.background, s.rng
    to, frm = rng.sample(s.world.humans.first_names, 2)
    hobby, hobby2 = rng.sample(bg.hobbies, 2)
    obj, obj2 = rng.sample(bg.objects, 2)
    paras = [
        f"Dear {to},",
        s.pick(
            (
                "Thank you for your last letter, which arrived on {dow} and cheered me up no end.",
                "It has been far too long since I wrote, and I am sorry for that.",
                "I am writing this at the kitchen table with the rain coming down outside.",
            )
        )
        + " "
        + f"Things here in {s.slots['town']} are much the same, though I feel "
        f"{rng.choice(bg.feelings)} this {s.slots['season_word']}.",
        f"I have taken up {hobby}, of all things. "
        + rng.choice(
            (
                f"There is a group that meets at {rng.choice(bg.venues)} every {rng.choice(DAYS)}.",
                "I am hopeless at it, but the company is good.",
                f"My neighbour talked me into it after we found {obj} in the loft.",
            )
        )
        + " "
        + rng.choice(
            (
                f"Do you still do {hobby2}?",
                "You would laugh to see me.",
                f"I think of you whenever I see {obj2}.",
            )
        ),
        rng.choice(
            (
                f"The weather has been {rng.choice(bg.weather)} for {rng.randint(2, 14)} days now.",
                f"We went out to see {rng.choice(bg.sights)} last weekend.",
                f"I finally cooked the {rng.choice(bg.dishes).name} you told me about.",
            )
        )
        + " "
        + rng.choice(
            (
                "Write back when you can, and tell me everything.",
                f"Perhaps you could visit in {rng.choice(bg.seasons)}?",
                "Give my love to everyone.",
            )
        ),
        rng.choice(("With love,", "All my best,", "Warmly,", "Yours ever,")) + f"\n{frm}",
    ]
    return "\n\n".join(paras)


def travel_guide(s: Scene) -> str:
    bg, rng = s.world.background, s.rng
    sights = rng.sample(bg.sights, 3)
    town = s.slots["town"]
    paras = [
        s.pick(
            (
                "A weekend in {town}",
                "{town}: a short guide",
                "Getting to know {town} in {season_word}",
            )
        ),
        f"{town} sits in {rng.choice(bg.regions)}, "
        + rng.choice(
            (
                f"{rng.randint(10, 120)} minutes by train from the nearest city.",
                "an easy drive along the old coast road.",
                "reached by a single daily bus or, better, on foot.",
            )
        )
        + " "
        + s.pick(
            (
                "It rewards slow exploration.",
                "Most visitors come for the day and wish they had stayed.",
                "It is at its best early in the morning.",
            )
        ),
        f"Start at {sights[0]}, "
        + rng.choice(
            (
                f"which opens at {rng.randint(8, 10)} o'clock.",
                "ideally before the crowds arrive.",
                f"free to enter on {rng.choice(DAYS)}s.",
            )
        )
        + f" From there it is a short walk to "
        f"{sights[1]}. If you have energy left, {sights[2]} is worth the climb.",
        f"For lunch, look for {rng.choice(bg.dishes).name} at one of the cafes near "
        f"{rng.choice(bg.venues)}. "
        + rng.choice(
            (
                f"Expect to pay around {rng.randint(6, 30)} for a main course.",
                "Book ahead at weekends.",
                "Portions are generous.",
            )
        ),
        s.pick(
            (
                "Bring layers: the weather can turn to {weather} without warning.",
                "In {season_word}, the evenings are long and the light is lovely.",
                "Locals recommend {hobby} if you are staying longer.",
            )
        ),
    ]
    return "\n\n".join(paras)


def how_to(s: Scene) -> str:
    bg, rng = s.world.background, s.rng
    chore = rng.choice(bg.chores)
    tools = rng.sample(bg.tools, 3)
    steps = []
    step_templates = (
        "Take {tool} and start gently; forcing it is the usual mistake.",
        "Clear the area first and lay down {tool}.",
        "Check your progress every few minutes with {tool}.",
        "If it still resists, wait {n} minutes and try again.",
        "Work slowly from one side to the other.",
        "Wipe everything down and put {tool} away.",
        "Test the result before you call it finished.",
        "Ask someone to hold it steady while you use {tool}.",
    )
    for k, template in enumerate(rng.sample(step_templates, rng.randint(4, 6))):
        steps.append(f"{k + 1}. " + template.format(tool=rng.choice(tools), n=rng.randint(2, 30)))
    paras = [
        f"How to {chore}",
        s.pick(
            (
                "This is a job most people can do in under {mins} minutes with no special skills.",
                "I put this off for {n} months, and it turned out to be easy.",
                "A neighbour in {town} showed me how to do this; I have never paid anyone since.",
            )
        ),
        "You will need: " + ", ".join(tools) + ".",
        "\n".join(steps),
        s.pick(
            (
                "If in doubt, stop and ask someone who has done it before.",
                "That is all there is to it. Put the kettle on.",
                "Done properly, you should not need to do this again until next {season_word}.",
            )
        ),
    ]
    return "\n\n".join(paras)


def background_scene_slots(s: Scene) -> None:
    """Slots shared by the background genres."""
    bg, rng = s.world.background, s.rng
    s.slots.update(
        town=rng.choice(bg.towns),
        season_word=rng.choice(bg.seasons),
        dow=rng.choice(DAYS),
        venue=rng.choice(bg.venues),
        weather=rng.choice(bg.weather),
        hobby=rng.choice(bg.hobbies),
        mins=str(rng.randint(10, 90)),
        n=str(rng.randint(2, 12)),
        ing=rng.choice(rng.choice(bg.dishes).ingredients),
        pronoun=rng.choice(("she", "he", "they")),
    )


BACKGROUND_WRITERS: dict[str, Callable[[Scene], str]] = {
    "recipe": recipe,
    "weather_report": weather_report,
    "local_news": local_news,
    "sports_report": sports_report,
    "letter": letter,
    "travel_guide": travel_guide,
    "how_to": how_to,
}
