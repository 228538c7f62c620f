"""Live tests against a real Moodle (skipped unless MOODLE_TEST_URL, MOODLE_TEST_TOKEN, MOODLE_TEST_TEMPLATE_ID)."""
