"""pytest must not collect the vendored transformers files as tests of their own: they are modules of the
`transformers_tests` package assembled by `fetch_suite.py` (their relative imports only work there), and
`tests/test_hf_common.py` runs their mixins against this model."""

collect_ignore_glob = ["vendor/*"]
