"""The README's serving examples are complete: every request parses and says which model it calls, so
tests/test_pipeline_local.py can re-run each against the churn and CLV packages of a real run."""

import readme_examples


def test_every_serving_example_in_the_readme_is_a_whole_request_with_its_answer():
    text = readme_examples.README.read_text()
    shown = readme_examples.examples("churn") + readme_examples.examples("clv")
    assert len(shown) == text.count("curl -s localhost:8080/v") == 3  # none left out by the pattern
    assert all(readme_examples.decisions(answer) for _, _, answer in shown)  # each shows what it decides
