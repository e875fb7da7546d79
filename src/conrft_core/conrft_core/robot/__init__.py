"""Robot: the contract the ROS nodes rely on, without ROS.

Action and proprio spaces, scaling and the safety box (`spaces`), chunk execution and action checks (`control`),
step targets as a stream of limited poses between control steps (`streaming`) and the target streamer's rules
(`relay`), controller presets (`controllers`),
policy weights on the wire (`weights`), teleop device mappings (`teleop`), robot-state assembly (`robot_state`),
the home-reset path (`homing`), camera image crops (`images`), node parameter declaration (`node_params`) and
signal handling (`signals`). May import `conrft_core.learning` and `conrft_core.data`.
"""
