"""Alarms: rules, evaluation, states with history, and notifications to channels.

How the parts fit (one concept per module):

    model          the words: AlarmState, Comparison, Statistic, MissingData, Condition, MetricQuery
    spec           the forms users fill in (AlarmSpec, AlarmIn, ChannelIn) and their 422 rules
    metric_source  "how a value is computed" for metric alarms: series → one datapoint per period
    evaluate       pure: datapoints + Condition → Evaluation (state, value, reason); CloudWatch's
                   M of N and missing-data modes
    transitions    pure: status + Evaluation → Step (new status, history entry, notification)
    payloads       pure: Alertmanager v4 webhook body, Slack-compatible chat body
    store          alarms, history (14 days), channels, notifications and their attempt log
    notify         delivery: stored first, retried on 5xx/network, not on 4xx, kept if undelivered
    engine         the service: evaluates metric alarms as data arrives, then `observe`

Plugging in another source (issue 6's log keyword alarms, "≥ N lines matching Q within W s")
----------------------------------------------------------------------------------------------

A source only computes values; states, history and channels are shared:

1. Store the alarm with `AlarmStore.put_alarm(source=AlarmSource.LOGS, definition=...)`. The
   definition is JSON of the source's choosing, plus the keys every alarm has: `comparison`,
   `threshold`, `period`, `evaluation_periods`, `datapoints_to_alarm`, `missing`, `channels`,
   `repeat_interval` and optionally `summary` (the sentence notifications carry). Check the
   period with `spec.check_period(period, minimum=settings.alarm_min_period)`.
2. Whenever new data may change the value (e.g. after each batch of captured lines), compute
   the datapoints (oldest first, None for "no data"), for example the count of matching lines
   in the last W seconds, and judge them:

       condition = Condition(Comparison.GE, threshold=n, period=w, missing=MissingData.NOT_BREACHING)
       evaluation = evaluate.compute_evaluation(condition, [count], alarm.status.state)
       await alarms.observe(alarm, evaluation, now=now)

   `Alarms.observe` is the one entry point: it runs the state machine, stores status and
   history in one transaction, notifies the alarm's channels (firing / resolved / repeat) and
   is what `dkos alarms list|show|history` and `/v1/alarms` read. Metric evaluation
   (`Alarms.evaluate`) only picks alarms whose source is `metric`, so other sources' alarms
   are left to them. Scaling policies link alarms by name, whatever their source.
3. To let an app spec declare them, see `api/alerting.sync_declared` (log alarms: the spec's
   `log_alarms:`, stored with `Origin.SPEC`; removal of undeclared ones is shared).
"""
