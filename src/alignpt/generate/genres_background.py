"""Neutral background genres: ordinary everyday text with no AI in it.

These documents dominate a realistic pretraining mix and carry the capability signal, so
each one is assembled from many independently drawn slots (places, people, numbers, lists)
to keep the corpus diverse. The prose is package data (``genres/background.yaml``); a writer
holds the order of its parts and the numbers drawn between them.
"""

from __future__ import annotations

from collections.abc import Callable

from alignpt.generate.context import Scene
from alignpt.generate.templates import genre_formatters, genre_templates

TEMPLATES = genre_templates("background")  # filled through the scene (alternatives, slots)
FORMATTERS = genre_formatters("background")  # filled with values the writer drew
DAYS = TEMPLATES["shared"]["days"]
PRONOUNS = TEMPLATES["shared"]["pronouns"]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _town(s: Scene) -> str:
    return s.rng.choice(s.world.background.towns)


def recipe(s: Scene) -> str:
    t, f, bg, rng = TEMPLATES["recipe"], FORMATTERS["recipe"], s.world.background, s.rng
    dish = rng.choice(bg.dishes)
    ings = list(dish.ingredients)
    rng.shuffle(ings)
    serves = rng.randint(2, 8)
    lines = [f["title"](dish=_cap(dish.name), serves=serves)]
    lines.append(s.pick(t["intro"]))
    amounts = []
    for ing in ings:
        amount = (
            f"{rng.randint(1, 12) * 25}{rng.choice(t['units'])}"
            if rng.random() < 0.7
            else (f"{rng.randint(1, 4)}")
        )
        amounts.append(f"- {amount} {ing}")
    lines.append(t["ingredients"] + "\n" + "\n".join(amounts))
    steps = []
    for k in range(rng.randint(4, 7)):
        a, b = rng.sample(ings, 2)
        steps.append(
            f"{k + 1}. "
            + rng.choice(f["steps"])(
                a=a,
                b=b,
                vessel=rng.choice(t["vessels"]),
                tech=rng.choice(bg.techniques),
                n=rng.randint(2, 45),
                temp=rng.choice(t["oven_temperatures"]),
            )
        )
    lines.append(t["method"] + "\n" + "\n".join(steps))
    lines.append(s.pick(t["serving"]))
    return "\n\n".join(lines)


def weather_report(s: Scene) -> str:
    t, f, bg, rng = (
        TEMPLATES["weather_report"],
        FORMATTERS["weather_report"],
        s.world.background,
        s.rng,
    )
    s.slots["region"] = rng.choice(bg.regions)  # world text goes in as a slot, never a template
    start = rng.randrange(7)
    lines = [s.fill(t["title"])]
    lines.append(s.pick(t["outlook"]))
    days = []
    for k in range(rng.randint(4, 7)):
        day = DAYS[(start + k) % 7]
        lo = rng.randint(-4, 14)
        hi = lo + rng.randint(3, 11)
        town = _town(s)
        weather = rng.choice(bg.weather)
        wind = rng.randint(5, 60)  # drawn for every day, whichever line is chosen
        days.append(
            f["day"](day=day, weather=weather, town=town)
            + rng.choice(f["temperatures"])(hi=hi, lo=lo, wind=wind)
        )
    lines.append("\n".join(days))
    lines.append(s.pick(t["advice"]))
    return "\n\n".join(lines)


def local_news(s: Scene) -> str:
    t, f, bg, rng = TEMPLATES["local_news"], FORMATTERS["local_news"], s.world.background, s.rng
    topic = rng.choice(bg.civic_topics)
    s.slots.update(topic=topic, topic_cap=_cap(topic))  # slots: world text is never a template
    councillor, resident = s.person(), s.person()
    votes_for = rng.randint(3, 12)
    votes_against = rng.randint(0, 9)
    paras = [
        s.fill(t["headline"]),
        s.pick(t["meeting"]),
        f["waited"](years=rng.randint(2, 20), councillor=councillor) + s.pick(t["debate"]),
        f["resident"](resident=resident, town=s.slots["town"], years=rng.randint(3, 60))
        + rng.choice(t["mood"])
        + " "
        + s.pick(t["resident_quote"]),
        f["vote"](votes_for=votes_for, votes_against=votes_against) + s.pick(t["next"]),
    ]
    return "\n\n".join(paras)


def sports_report(s: Scene) -> str:
    t, f, bg, rng = (
        TEMPLATES["sports_report"],
        FORMATTERS["sports_report"],
        s.world.background,
        s.rng,
    )
    sport = rng.choice(bg.sports)
    home_town, away_town = rng.sample(bg.towns, 2)
    home = f"{home_town} {rng.choice(bg.team_nouns)}"
    away = f"{away_town} {rng.choice(bg.team_nouns)}"
    hs, as_ = rng.randint(0, 5), rng.randint(0, 5)
    if sport in t["high_scoring"]:
        hs, as_ = hs * rng.randint(9, 40), as_ * rng.randint(9, 40)
    players = [s.person() for _ in range(3)]
    result = t["result"]["draw" if hs == as_ else ("win" if hs > as_ else "loss")]
    crowd = f["crowd"](
        home=home, result=result, away=away, crowd=rng.randint(2, 90) * 100, day=rng.choice(DAYS)
    ) + s.pick(t["conditions"])
    standout = f["standout"](player=players[0]) + rng.choice(t["standout_play"])
    minute = rng.randint(50, 89)  # drawn whichever line is chosen
    second = rng.choice(f["second"])(player=players[1], minute=minute)
    paras = [
        f"{sport.title()}: {home} {hs}, {away} {as_}",
        crowd,
        standout + " " + second,
        f["verdict"](verdict=rng.choice(t["verdicts"]), coach=players[2]) + s.pick(t["next"]),
    ]
    return "\n\n".join(paras)


def letter(s: Scene) -> str:
    t, f, bg, rng = TEMPLATES["letter"], FORMATTERS["letter"], s.world.background, s.rng
    to, frm = rng.sample(s.world.humans.first_names, 2)
    hobby, hobby2 = rng.sample(bg.hobbies, 2)
    obj, obj2 = rng.sample(bg.objects, 2)
    opening = s.pick(t["opening"])
    news = f["news"](
        town=s.slots["town"], feeling=rng.choice(bg.feelings), season=s.slots["season_word"]
    )
    # Every value a line could use is drawn before the line is chosen, whichever it is.
    venue, day = rng.choice(bg.venues), rng.choice(DAYS)
    hobby_news = rng.choice(f["hobby_news"])(venue=venue, day=day, obj=obj)
    question = rng.choice(f["hobby_question"])(hobby=hobby2, obj=obj2)
    weather, days = rng.choice(bg.weather), rng.randint(2, 14)
    sight, dish = rng.choice(bg.sights), rng.choice(bg.dishes).name
    recent = rng.choice(f["recent"])(weather=weather, days=days, sight=sight, dish=dish)
    season = rng.choice(bg.seasons)
    closing = rng.choice(f["closing"])(season=season)
    paras = [
        f["greeting"](name=to),
        opening + " " + news,
        f["hobby"](hobby=hobby) + hobby_news + " " + question,
        recent + " " + closing,
        rng.choice(t["sign_off"]) + f"\n{frm}",
    ]
    return "\n\n".join(paras)


def travel_guide(s: Scene) -> str:
    t, f, bg, rng = TEMPLATES["travel_guide"], FORMATTERS["travel_guide"], s.world.background, s.rng
    sights = rng.sample(bg.sights, 3)
    town = s.slots["town"]
    title = s.pick(t["title"])
    location = f["location"](town=town, region=rng.choice(bg.regions))
    minutes = rng.randint(10, 120)
    access = rng.choice(f["access"])(minutes=minutes)
    charm = s.pick(t["charm"])
    hour, day = rng.randint(8, 10), rng.choice(DAYS)
    start = rng.choice(f["start_tip"])(hour=hour, day=day)
    dish, venue = rng.choice(bg.dishes).name, rng.choice(bg.venues)
    price = rng.randint(6, 30)
    lunch_tip = rng.choice(f["lunch_tip"])(price=price)
    paras = [
        title,
        location + access + " " + charm,
        f["start"](sight=sights[0]) + start + f["walk"](second=sights[1], third=sights[2]),
        f["lunch"](dish=dish, venue=venue) + lunch_tip,
        s.pick(t["tip"]),
    ]
    return "\n\n".join(paras)


def how_to(s: Scene) -> str:
    t, f, bg, rng = TEMPLATES["how_to"], FORMATTERS["how_to"], s.world.background, s.rng
    chore = rng.choice(bg.chores)
    tools = rng.sample(bg.tools, 3)
    steps = []
    for k, step in enumerate(rng.sample(f["steps"], rng.randint(4, 6))):
        steps.append(f"{k + 1}. " + step(tool=rng.choice(tools), n=rng.randint(2, 30)))
    paras = [
        f["title"](chore=chore),
        s.pick(t["intro"]),
        f["tools"](tools=", ".join(tools)),
        "\n".join(steps),
        s.pick(t["outro"]),
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
        pronoun=rng.choice(PRONOUNS),
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
