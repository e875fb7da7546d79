"""The QoS of the learner link, for the nodes on both ends of it and the tools that stand in for one. A reader and
a writer whose profiles do not fit never match, and nothing says so: one definition of each."""
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

# Live and resent transitions: history never drops one (a lost step would leave a half episode at the learner).
TRANSITIONS_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_ALL)
# The latest weights, kept for a policy node that starts (or restarts) after they were published.
WEIGHTS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
# Transient-local: a policy node restarted later still learns what its predecessor may delete from its outbox.
ACKS_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
