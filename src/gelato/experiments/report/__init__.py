"""The paper reproduction's report, in four steps: ``artifacts`` (load and store CSV/JSON), ``analysis``
(gains and comparisons: numbers only), ``markdown`` (tables and sections) and ``narrative`` (the
conclusions, each computed from the numbers it states); ``produce`` runs the sweeps and assembles
``paper-reproduction.md``."""

from gelato.experiments.report.analysis import (
                                                GAIN_COLUMNS,
                                                IVP_COLUMNS,
                                                SOURCE_ORDER,
                                                gains,
                                                improved_vs_paper,
                                                pct_gain,
)
from gelato.experiments.report.artifacts import ARTIFACT_DIR, REPORT_NAME, load_fits
from gelato.experiments.report.produce import (
                                                fig2_fits,
                                                load_results,
                                                produce_fig2,
                                                produce_fig4,
                                                produce_sweep,
                                                replot,
                                                write_report,
)
from gelato.experiments.sweep import read_csv, write_csv

__all__ = ["ARTIFACT_DIR", "GAIN_COLUMNS", "IVP_COLUMNS", "REPORT_NAME", "SOURCE_ORDER", "fig2_fits", "gains",
           "improved_vs_paper", "load_fits", "pct_gain", "load_results", "produce_fig2", "produce_fig4", "produce_sweep",
           "read_csv", "replot", "write_csv", "write_report"]
