"""A syntax check for the custom elements' stylesheets (components/*.css), run by `make lint`.

    python -m tools.lint_css components/*.css

CSS parsers recover from errors silently (a browser drops the broken rule and carries on), so a typo here shows up
only as a page that looks wrong. This parses each file with tinycss2, as a browser would, and reports what a browser
would drop: parse errors, rules without a selector or a body, declarations without a value, and blocks left open.
Exit status 1 when anything is found.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tinycss2

NESTED_AT_RULES = {"media", "supports", "container", "layer"}  # their block holds rules, not declarations


def problems_in_rules(rules: Iterable[Any], where: str) -> list[str]:
    found: list[str] = []
    for rule in rules:
        line = f"{where}:{getattr(rule, 'source_line', '?')}"
        if rule.type == "error":
            found.append(f"{line}: {rule.message}")
        elif rule.type == "qualified-rule":
            if not tinycss2.serialize(rule.prelude).strip():
                found.append(f"{line}: a rule without a selector")
            found += problems_in_declarations(rule.content, where)
        elif rule.type == "at-rule" and rule.lower_at_keyword in NESTED_AT_RULES:
            if rule.content is None:
                found.append(f"{line}: @{rule.at_keyword} without a block")
            else:
                found += problems_in_rules(tinycss2.parse_rule_list(rule.content, True, True), where)
    return found


def problems_in_declarations(content: list[Any], where: str) -> list[str]:
    found = []
    for item in tinycss2.parse_blocks_contents(content, skip_comments=True, skip_whitespace=True):
        line = f"{where}:{getattr(item, 'source_line', '?')}"
        if item.type == "error":
            found.append(f"{line}: {item.message}")
        elif item.type == "declaration" and not tinycss2.serialize(item.value).strip():
            found.append(f"{line}: '{item.name}' has no value")
        elif item.type == "qualified-rule":  # nested rule (CSS nesting): check its body too
            found += problems_in_declarations(item.content, where)
    return found


def problems(path: Path) -> list[str]:
    text = path.read_text()
    found = problems_in_rules(tinycss2.parse_stylesheet(text, skip_comments=True, skip_whitespace=True), str(path))
    # A parser closes blocks left open at the end of the file without a word; count the braces outside comments.
    code = "".join(tinycss2.serialize([t]) for t in tinycss2.parse_component_value_list(text, skip_comments=True))
    if code.count("{") != code.count("}") or text.count("{") != text.count("}"):
        found.append(f"{path}: unbalanced braces ({text.count('{')} '{{', {text.count('}')} '}}')")
    return found


def main(paths: list[str]) -> int:
    found = [problem for name in paths for problem in problems(Path(name))]
    for problem in found:
        print(problem)
    print(f"{len(paths)} stylesheets checked, {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
