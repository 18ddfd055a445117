import pytest

from mediagen.jobs.states import (
    TERMINAL,
    InvalidTransition,
    JobState,
    Transition,
    next_state,
    sources,
)

P, R, S, F, C = (
    JobState.PENDING,
    JobState.RUNNING,
    JobState.SUCCEEDED,
    JobState.FAILED,
    JobState.CANCELED,
)

ALLOWED = {
    (P, Transition.CLAIM): R,
    (R, Transition.CLAIM): R,
    (R, Transition.SUCCEED): S,
    (R, Transition.FAIL): F,
    (P, Transition.FAIL): F,
    (R, Transition.RETRY): P,
    (R, Transition.RELEASE): P,
    (P, Transition.CANCEL): C,
    (R, Transition.CANCEL): C,
}


@pytest.mark.parametrize("state", list(JobState))
@pytest.mark.parametrize("transition", list(Transition))
def test_transition_table(state: JobState, transition: Transition) -> None:
    expected = ALLOWED.get((state, transition))
    if expected is None:
        with pytest.raises(InvalidTransition):
            next_state(state, transition)
    else:
        assert next_state(state, transition) is expected


def test_terminal_states_have_no_way_out() -> None:
    for state in TERMINAL:
        assert state.terminal
        for transition in Transition:
            with pytest.raises(InvalidTransition):
                next_state(state, transition)


def test_sources_are_the_where_clause() -> None:
    assert sources(Transition.CANCEL) == {P, R}
    assert sources(Transition.SUCCEED) == {R}
