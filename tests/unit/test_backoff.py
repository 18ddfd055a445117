import random
from itertools import islice

from mediagen.backoff import exponential_delays, retry_delay


def test_delays_double_up_to_the_cap_without_jitter() -> None:
    assert list(islice(exponential_delays(1, 10, jitter=False), 6)) == [1, 2, 4, 8, 10, 10]


def test_full_jitter_stays_within_the_bound() -> None:
    rng = random.Random(7)
    for n, delay in enumerate(islice(exponential_delays(0.5, 30, rng=rng), 12)):
        assert 0 <= delay <= min(30, 0.5 * 2**n)


def test_retry_after_is_a_floor() -> None:
    rng = random.Random(1)
    assert retry_delay(1, 1.0, 60.0, retry_after_s=17, rng=rng) >= 17
    assert retry_delay(3, 1.0, 60.0, rng=random.Random(1)) <= 4
