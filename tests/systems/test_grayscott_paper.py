"""The paper profile reproduces Table 1's RD rows (M within 5 %, R within 0.01)."""

import pytest

from rdbench.balance import BalanceMeter
from rdbench.config import load_system
from rdbench.report.published import load_published
from rdbench.systems.grayscott import TERMS, GrayScottSimulation


@pytest.mark.slow
def test_paper_profile_reproduces_the_rd_rows():
    published = load_published()  # conf/published.yaml: Table 1 as printed
    conf = load_system("rd")
    cases = ["spot", "stripe"]
    sim = GrayScottSimulation([conf.resolve(c).model_copy(update={"controls": {}}) for c in cases], [0] * len(cases))
    meter = BalanceMeter(len(cases), TERMS)
    sim.run(meter)
    for row, case in enumerate(cases):
        paper = published[("rd", case)]
        r = meter.result([row])
        assert r.M_react == pytest.approx(paper.M_react, rel=0.05), case
        assert r.M_diff == pytest.approx(paper.M_diff, rel=0.05), case
        assert r.R == pytest.approx(paper.R, abs=0.01), case
