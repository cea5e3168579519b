"""Alarms: rules, evaluation, states, history and notifications (see the module list below)."""
