"""The doctor's report: one row per finding, a console table and a JSON document."""
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List

OK, WARN, FAIL, SKIP = 'OK', 'WARN', 'FAIL', 'SKIP'
STATUSES = (OK, WARN, FAIL, SKIP)


@dataclass
class Row:
    """One finding: ``check`` (section), ``item`` (what was looked at), ``status``, ``detail``."""
    check: str
    item: str
    status: str
    detail: str
    data: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f'status must be one of {STATUSES}, got {self.status!r}')


def _jsonable(value: Any) -> Any:
    """Plain JSON values (NaN / Inf written as strings, tuples as lists)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class Report:
    """Rows in the order the checks ran; :attr:`failed` when any row is FAIL."""

    def __init__(self, config: str = '') -> None:
        self.config = config
        self.rows: List[Row] = []
        self.meta: Dict[str, Any] = {}

    def add(self, check: str, item: str, status: str, detail: str, **data: Any) -> Row:
        row = Row(check, item, status, detail, data)
        self.rows.append(row)
        return row

    def extend(self, rows: List[Row]) -> None:
        self.rows.extend(rows)

    @property
    def failed(self) -> bool:
        return any(r.status == FAIL for r in self.rows)

    def counts(self) -> Dict[str, int]:
        return {s: sum(r.status == s for r in self.rows) for s in STATUSES}

    def find(self, check: str, status: str = None) -> List[Row]:
        return [r for r in self.rows if r.check == check and (status is None or r.status == status)]

    def table(self, width: int = 100) -> str:
        """The rows as one fixed-width table; long details wrap under the detail column."""
        import textwrap
        w_check = max([len('check')] + [len(r.check) for r in self.rows])
        w_item = min(36, max([len('item')] + [len(r.item) for r in self.rows]))
        w_detail = max(30, width - w_check - w_item - 12)
        head = f'{"check":<{w_check}}  {"item":<{w_item}}  {"status":<6}  detail'
        lines = [head, '-' * len(head.expandtabs()) + '-' * 20]
        for r in self.rows:
            item = r.item if len(r.item) <= w_item else r.item[:w_item - 3] + '...'
            wrapped = textwrap.wrap(r.detail, w_detail) or ['']
            lines.append(f'{r.check:<{w_check}}  {item:<{w_item}}  {r.status:<6}  {wrapped[0]}')
            pad = ' ' * (w_check + w_item + 12)
            lines.extend(pad + more for more in wrapped[1:])
        c = self.counts()
        lines.append('')
        lines.append(f'{c[OK]} OK, {c[WARN]} WARN, {c[FAIL]} FAIL, {c[SKIP]} SKIP -> '
                     + ('FAIL' if self.failed else 'PASS'))
        return '\n'.join(lines)

    def to_dict(self) -> Dict[str, Any]:
        return _jsonable(dict(config=self.config, result='FAIL' if self.failed else 'PASS',
                              counts=self.counts(), meta=self.meta,
                              rows=[asdict(r) for r in self.rows]))

    def dump(self, path: str) -> None:
        """Write the report as JSON, atomically (an interrupted write leaves the old file or none)."""
        from mmkd_plugins.utils.safe_output import atomic_write
        with atomic_write(path, 'w') as f:
            json.dump(self.to_dict(), f, indent=1)


def row(check: str, item: str, status: str, detail: str, **data: Any) -> Row:
    """A :class:`Row` with its data given as keywords."""
    return Row(check, item, status, detail, data)
