#!/usr/bin/env python3
"""tests/compat/junit_cases.py FILE.xml: one line per test case of a
regrtest --junit-xml report, sorted: "<name> <outcome>", the outcome being
ok, failure, error or skipped. Two runs that agree test by test print the
same lines."""
import sys
import xml.etree.ElementTree as ET


def main():
    root = ET.parse(sys.argv[1]).getroot()
    rows = []
    for tc in root.iter("testcase"):
        outcome = "ok"
        for kind in ("error", "failure", "skipped"):
            if tc.find(kind) is not None:
                outcome = kind
                break
        rows.append("%s %s" % (tc.get("name"), outcome))
    rows.sort()
    print("\n".join(rows))


if __name__ == "__main__":
    main()
