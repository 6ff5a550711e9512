"""Analysis: bootstrap confidence intervals, bits, paired differences."""
