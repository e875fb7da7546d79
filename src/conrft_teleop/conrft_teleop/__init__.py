"""Teleoperation node: SpaceMouse (spacenav), keyboard and a scripted intervener; publishes intervention state."""
