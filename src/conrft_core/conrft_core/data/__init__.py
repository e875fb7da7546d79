"""Data: what a robot produced and what the learner stores.

Episodes (`episode`), chunked replay buffers (`replay`), rosbag2 demonstration bags (`bags`), Transition
messages <-> episodes (`transitions`), the learner's transition journal (`journal`), the robot's outbox
(`outbox`) and the learner's intake of what it resends (`intake`), episode statistics (`stats`). Imports
neither `conrft_core.learning` nor `conrft_core.robot`; sizes (action, proprio) come from the data or the caller,
never from a robot's constants.
"""
