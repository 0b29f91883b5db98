"""devhost's NCRONTAB parser against the NCrontab library's grammar and arithmetic (what Azure runs)."""
from datetime import UTC, datetime

import pytest

from devhost.ncrontab import DAY_OF_WEEK, MINUTE, CrontabError, CrontabSchedule

START = datetime(2024, 1, 1, 12, 0, 0, 500000, tzinfo=UTC)  # a Monday


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def next_times(expression: str, count: int = 3, start: datetime = START) -> list[datetime]:
    return CrontabSchedule.parse(expression).next_occurrences(start, count)


@pytest.mark.parametrize(("expression", "expected"), [
    ("*/5 * * * * *", [at(2024, 1, 1, 12, 0, 5), at(2024, 1, 1, 12, 0, 10), at(2024, 1, 1, 12, 0, 15)]),
    ("0 */5 * * * *", [at(2024, 1, 1, 12, 5), at(2024, 1, 1, 12, 10), at(2024, 1, 1, 12, 15)]),
    ("10,20,45 * * * * *", [at(2024, 1, 1, 12, 0, 10), at(2024, 1, 1, 12, 0, 20), at(2024, 1, 1, 12, 0, 45)]),
    ("0 30 9 * * 1-5", [at(2024, 1, 2, 9, 30), at(2024, 1, 3, 9, 30), at(2024, 1, 4, 9, 30)]),
    ("0 0 0 29 2 *", [at(2024, 2, 29), at(2028, 2, 29), at(2032, 2, 29)]),
])
def test_next_occurrences(expression: str, expected: list[datetime]) -> None:
    assert next_times(expression) == expected


def test_five_fields_mean_no_seconds_field() -> None:
    schedule = CrontabSchedule.parse("*/15 * * * *")
    assert not schedule.has_seconds
    assert schedule.next_occurrences(START, 2) == [at(2024, 1, 1, 12, 15), at(2024, 1, 1, 12, 30)]


def test_occurrences_are_strictly_after_the_start_at_whole_seconds() -> None:
    assert next_times("* * * * * *", 1, at(2024, 1, 1, 12, 0, 0)) == [at(2024, 1, 1, 12, 0, 1)]
    assert next_times("* * * * * *", 1, START) == [at(2024, 1, 1, 12, 0, 1)]


def test_rolls_over_minutes_hours_days_months_and_years() -> None:
    assert next_times("59 59 23 31 12 *", 2, at(2024, 12, 31, 23, 59, 59)) == [
        at(2025, 12, 31, 23, 59, 59), at(2026, 12, 31, 23, 59, 59)]


def test_day_of_month_and_day_of_week_must_both_match() -> None:
    # Unix cron would fire on every 13th and every Friday; NCrontab only on Friday the 13th.
    assert next_times("0 0 0 13 * FRI") == [at(2024, 9, 13), at(2024, 12, 13), at(2025, 6, 13)]


@pytest.mark.parametrize(("names", "numbers"), [
    ("0 0 0 * * MON-FRI", "0 0 0 * * 1-5"),
    ("0 0 0 * * monday,Wed,FRIDAY", "0 0 0 * * 1,3,5"),
    ("0 0 0 * * Sun", "0 0 0 * * 0"),
    ("0 0 0 1 JAN,jul *", "0 0 0 1 1,7 *"),
    ("0 0 0 1 Ju *", "0 0 0 1 6 *"),
    ("0 0 0 * * FRI-MON", "0 0 0 * * 1-5"),
])
def test_names_are_case_insensitive_prefixes_of_english_names(names: str, numbers: str) -> None:
    assert CrontabSchedule.parse(names).expanded() == CrontabSchedule.parse(numbers).expanded()


@pytest.mark.parametrize(("expression", "expanded"), [
    ("5-2 * * * * *", "2-5 * * * * *"),
    ("50/5 * * * * *", "50,55 * * * * *"),
    ("0-10/5 * * * * *", "0,5,10 * * * * *"),
    ("*/0 * * * * *", "* * * * * *"),
    ("0 0-59 * * * *", "0 * * * * *"),
    ("0 0 */6 * * *", "0 0 0,6,12,18 * * *"),
    ("*/20 * * * *", "0,20,40 * * * *"),
])
def test_ranges_steps_and_the_expanded_form_the_host_logs(expression: str, expanded: str) -> None:
    assert CrontabSchedule.parse(expression).expanded() == expanded


def test_wildcard_fields() -> None:
    schedule = CrontabSchedule.parse("*/10 * * * * 0-6")
    assert schedule.is_wildcard(MINUTE)
    assert schedule.is_wildcard(DAY_OF_WEEK)
    assert not CrontabSchedule.parse("0 1-5 * * * *").is_wildcard(MINUTE)


def test_a_date_that_never_comes_has_no_occurrence() -> None:
    assert CrontabSchedule.parse("0 0 0 31 2 *").next_after(START) is None


@pytest.mark.parametrize(("expression", "message"), [
    ("* * * *", "must contain 6 components"),
    ("* * * * * * *", "must contain 6 components"),
    ("", "must contain 6 components"),
    ("* * * * * 7", "7 is higher than the maximum allowable value for the [DayOfWeek] field"),
    ("60 * * * * *", "60 is higher than the maximum allowable value for the [Second] field"),
    ("0 0 0 0 * *", "0 is lower than the minimum allowable value for the [Day] field"),
    ("0 0 0 * 13 *", "13 is higher than the maximum allowable value for the [Month] field"),
    ("0 0 24 * * *", "24 is higher than the maximum allowable value for the [Hour] field"),
    ("* * * * * ?", "'?' is not a known value name"),
    ("0 0 0 L * *", "'L' is not a valid [Day] crontab field value"),
    ("* * * * * Mondays", "'Mondays' is not a known value name"),
    ("MON * * * * *", "'MON' is not a valid [Second] crontab field value"),
    ("1, * * * * *", "cannot be empty"),
    (",1 * * * * *", "not a valid [Second] crontab field"),
    ("*/ * * * * *", "'' is not a number"),
    ("1a * * * * *", "'1a' is not a number"),
    ("0\t0 * * * * *", "not a valid [Second] crontab field expression"),
])
def test_invalid_expressions_are_rejected(expression: str, message: str) -> None:
    with pytest.raises(CrontabError) as error:
        CrontabSchedule.parse(expression)
    assert message in str(error.value)
