"""Both ends of the learner link use one QoS: the learner node's copy (it depends on no robot-side package) is
conrft_policy.link_qos. A reader and a writer whose profiles do not fit never match, and nothing says so."""
from conrft_learner import learner_node
from conrft_policy import link_qos


def test_the_learner_uses_the_robot_sides_link_qos():
    for name in ("TRANSITIONS_QOS", "WEIGHTS_QOS", "ACKS_QOS"):
        assert getattr(learner_node, name) == getattr(link_qos, name), name
    assert link_qos.WEIGHTS_QOS != link_qos.ACKS_QOS  # the comparison sees depth (it is not always true)
