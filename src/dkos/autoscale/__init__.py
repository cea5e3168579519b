"""Autoscaling: policies, pure decisions, and the autoscaler that executes them.

model   Policy, Trigger, Decision, and the words (PolicyType, Adjustment, Direction, ExecutionStatus)
spec    the policy form (PolicySpec, PolicyIn) and its 422 rules
decide  pure: step decisions (cooldown, clamping, percent rounding, re-firing, cancelled
        cooldowns) and target tracking (HPA: proportional, tolerance, scale-in stabilisation)
store   policies with their cooldown progress, and executions
engine  the Autoscaler: after every alarm evaluation, settle, decide, scale through the app store
"""
