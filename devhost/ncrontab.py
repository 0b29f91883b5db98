"""NCRONTAB schedules as the Functions timer trigger reads them (the NCrontab library's grammar and arithmetic).

The timer extension parses a schedule with NCrontab, with seconds unless the expression has exactly five
fields. What NCrontab accepts, and only that, is accepted here, including its quirks that differ from Unix
cron, because a schedule that parses locally must parse on Azure:

- day-of-week runs 0-6 with Sunday = 0 (7 is an error); names match by case-insensitive prefix of the full
  English name ("Mon", "MONDAY", "Ju" = June); only the month and day-of-week fields take names;
- a reversed range is swapped ("5-2" = "2-5"); "N/step" means from N to the field's maximum; a step below 1
  counts as 1;
- day-of-month and day-of-week must BOTH match (Unix cron matches either when both are restricted);
- fields are separated by spaces only; "?", "L", "W" and "#" do not exist.

Occurrences are strictly after the given time, at whole seconds, in the time zone of the time given.
"""
from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

_MONTHS = tuple(calendar.month_name[1:])
_DAYS_OF_WEEK = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DIGITS = re.compile(r"[0-9]+")
# The Gregorian calendar repeats every 400 years: a schedule with no occurrence in that span has none.
_SEARCH_YEARS = 400


class CrontabError(ValueError):
    """The expression is not a valid NCRONTAB schedule; the message says which part and why."""


@dataclass(frozen=True)
class _FieldKind:
    name: str
    min_value: int
    max_value: int
    names: tuple[str, ...] = ()


SECOND = _FieldKind("Second", 0, 59)
MINUTE = _FieldKind("Minute", 0, 59)
HOUR = _FieldKind("Hour", 0, 23)
DAY = _FieldKind("Day", 1, 31)
MONTH = _FieldKind("Month", 1, 12, _MONTHS)
DAY_OF_WEEK = _FieldKind("DayOfWeek", 0, 6, _DAYS_OF_WEEK)
_KINDS = (SECOND, MINUTE, HOUR, DAY, MONTH, DAY_OF_WEEK)


@dataclass(frozen=True)
class CrontabSchedule:
    """A parsed schedule: the allowed values of each field, sorted."""

    expression: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    days_of_week: tuple[int, ...]
    has_seconds: bool

    @classmethod
    def parse(cls, expression: str) -> CrontabSchedule:
        """Parse six fields (second first), or five (no seconds) as the timer extension does; raise CrontabError."""
        tokens = [t for t in expression.split(" ") if t]
        has_seconds = len(tokens) != 5
        if len(tokens) != 6 and has_seconds:
            raise CrontabError(
                f"'{expression}' is an invalid crontab expression. It must contain 6 components of a schedule in "
                "the sequence of seconds, minutes, hours, days, months, and days of week."
            )
        kinds = _KINDS if has_seconds else _KINDS[1:]
        values = [parse_field(kind, token) for kind, token in zip(kinds, tokens, strict=True)]
        seconds = values.pop(0) if has_seconds else (0,)
        minutes, hours, days, months, days_of_week = values
        return cls(expression, seconds, minutes, hours, days, months, days_of_week, has_seconds)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first occurrence strictly after `moment` (whole seconds, same tzinfo), or None if there is none."""
        start = moment.replace(microsecond=0) + timedelta(seconds=1)
        for day in _allowed_days(self, start.date()):
            earliest = start.time() if day == start.date() else time(0, 0, 0)
            found = self._first_time_from(earliest)
            if found is not None:
                return datetime.combine(day, found, tzinfo=moment.tzinfo)
        return None

    def next_occurrences(self, moment: datetime, count: int) -> list[datetime]:
        """Up to `count` consecutive occurrences after `moment`."""
        occurrences: list[datetime] = []
        while len(occurrences) < count:
            found = self.next_after(occurrences[-1] if occurrences else moment)
            if found is None:
                break
            occurrences.append(found)
        return occurrences

    def expanded(self) -> str:
        """The schedule with every field expanded, as NCrontab's ToString() prints it in the host's logs."""
        fields = list(zip(_KINDS, self._fields(), strict=True))
        if not self.has_seconds:
            fields = fields[1:]
        return " ".join(_format_field(kind, values) for kind, values in fields)

    def is_wildcard(self, kind: _FieldKind) -> bool:
        """Whether the field allows every value of its range (what NCrontab prints as '*')."""
        values = self._fields()[_KINDS.index(kind)]
        return len(values) == kind.max_value - kind.min_value + 1

    def _fields(self) -> tuple[tuple[int, ...], ...]:
        return (self.seconds, self.minutes, self.hours, self.days, self.months, self.days_of_week)

    def _first_time_from(self, earliest: time) -> time | None:
        for hour in (h for h in self.hours if h >= earliest.hour):
            same_hour = hour == earliest.hour
            for minute in (m for m in self.minutes if not same_hour or m >= earliest.minute):
                same_minute = same_hour and minute == earliest.minute
                second = next((s for s in self.seconds if not same_minute or s >= earliest.second), None)
                if second is not None:
                    return time(hour, minute, second)
        return None


def _allowed_days(schedule: CrontabSchedule, first: date) -> Iterator[date]:
    """Dates from `first` on whose month, day and weekday the schedule allows (both day fields must match)."""
    for year in range(first.year, min(first.year + _SEARCH_YEARS, 9999) + 1):
        for month in (m for m in schedule.months if (year, m) >= (first.year, first.month)):
            last_day = calendar.monthrange(year, month)[1]
            for day in (d for d in schedule.days if d <= last_day):
                candidate = date(year, month, day)
                if candidate >= first and _weekday(candidate) in schedule.days_of_week:
                    yield candidate


def _weekday(day: date) -> int:
    """.NET's DayOfWeek number, which NCrontab uses: Sunday = 0."""
    return (day.weekday() + 1) % 7


def parse_field(kind: _FieldKind, text: str) -> tuple[int, ...]:
    """The sorted values one field allows, parsed with NCrontab's rules (list, step, '*', range, value)."""
    try:
        values: set[int] = set()
        terms = text.split(",") if text.find(",") > 0 else [text]
        for term in terms:
            values.update(_parse_term(kind, term))
        return tuple(sorted(values))
    except CrontabError as exc:
        raise CrontabError(f"'{text}' is not a valid [{kind.name}] crontab field expression: {exc}") from None


def _parse_term(kind: _FieldKind, term: str) -> range:
    if not term:
        raise CrontabError("A crontab field value cannot be empty.")
    step: int | None = None
    if term.find("/") > 0:
        term, step_text = term.split("/", 1)
        step = max(_parse_integer(step_text), 1)
    if term == "*":
        return range(kind.min_value, kind.max_value + 1, step or 1)
    if term.find("-") > 0:
        first_text, last_text = term.split("-", 1)
        first, last = sorted((_parse_value(kind, first_text), _parse_value(kind, last_text)))
        _check_in_range(kind, first)
        _check_in_range(kind, last)
        return range(first, last + 1, step or 1)
    value = _parse_value(kind, term)
    _check_in_range(kind, value)
    return range(value, kind.max_value + 1, step) if step is not None else range(value, value + 1)


def _parse_integer(text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise CrontabError(f"'{text}' is not a number.")
    return int(text)


def _parse_value(kind: _FieldKind, text: str) -> int:
    if not text:
        raise CrontabError("A crontab field value cannot be empty.")
    if "0" <= text[0] <= "9":
        if not _DIGITS.fullmatch(text):
            raise CrontabError(f"'{text}' is not a number.")
        return int(text)
    if not kind.names:
        raise CrontabError(
            f"'{text}' is not a valid [{kind.name}] crontab field value. "
            f"It must be a numeric value between {kind.min_value} and {kind.max_value} (all inclusive)."
        )
    for index, name in enumerate(kind.names):
        if name.lower().startswith(text.lower()):
            return kind.min_value + index
    raise CrontabError(f"'{text}' is not a known value name. Use one of the following: {', '.join(kind.names)}.")


def _check_in_range(kind: _FieldKind, value: int) -> None:
    if not kind.min_value <= value <= kind.max_value:
        side = "higher than the maximum" if value > kind.max_value else "lower than the minimum"
        raise CrontabError(
            f"{value} is {side} allowable value for the [{kind.name}] field. "
            f"Value must be between {kind.min_value} and {kind.max_value} (all inclusive)."
        )


def _format_field(kind: _FieldKind, values: tuple[int, ...]) -> str:
    if len(values) == kind.max_value - kind.min_value + 1:
        return "*"
    runs: list[list[int]] = []
    for value in values:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ",".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)
