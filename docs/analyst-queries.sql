-- riskwatch: analysts' ClickHouse queries (三品一特 跨部门综合监管)
--
-- Run with the riskwatch database as default (clickhouse-client -d riskwatch, or `riskwatch query`).
-- Each query is one SELECT after a `-- name:` marker; tests/test_analyst_queries.py runs them all.
-- Current alert state: `alerts FINAL` (ReplacingMergeTree(revision)). Event tables: add FINAL to
-- drop replayed duplicates. Times are Asia/Shanghai.
-- Approximate disposal deadlines (处置时限, to be confirmed by the county):
--   red 红色 24 h, orange 橙色 72 h, yellow 黄色 7 d, blue 蓝色 15 d.

-- name: overdue_alerts_by_department
-- 本周各部门超期未处置预警(firing/acknowledged 且超过按级别的处置时限)
-- Overdue alerts per receiving department, for alerts opened this week that are still
-- firing/acknowledged past their deadline.
SELECT department,
       count() AS overdue,
       countIf(level = 'red') AS red,
       countIf(level = 'orange') AS orange,
       countIf(level = 'yellow') AS yellow,
       countIf(level = 'blue') AS blue,
       round(max(dateDiff('second', first_seen, now64(3)) / 3600 - deadline_h), 1) AS worst_hours_over
FROM
(
    SELECT alert_id, level, first_seen, departments,
           multiIf(level = 'red', 24, level = 'orange', 72, level = 'yellow', 168, 360) AS deadline_h
    FROM alerts FINAL
    WHERE status IN ('firing', 'acknowledged')
      AND first_seen >= toStartOfWeek(now64(3), 1) - INTERVAL 14 DAY
)
ARRAY JOIN departments AS department
WHERE first_seen + toIntervalHour(deadline_h) < now64(3)
GROUP BY department
ORDER BY overdue DESC, red DESC;

-- name: entities_risk_rising_three_days
-- 风险分连续三天上升的主体(risk_scores 每日最高分逐日上升)
-- Entities whose daily maximum risk score rose three days running (last three daily values,
-- each above the one before).
SELECT entity_id, any(r.name) AS name, any(r.township) AS township,
       arrayMap(x -> round(x, 1), last3) AS last_three_daily_max
FROM
(
    SELECT entity_id,
           arraySlice(arrayMap(x -> x.2, arraySort(groupArray((day, max_score)))), -3) AS last3
    FROM
    (
        SELECT entity_id, toDate(at) AS day, max(score) AS max_score
        FROM risk_scores FINAL
        WHERE at >= now64(3) - INTERVAL 14 DAY
        GROUP BY entity_id, day
    )
    GROUP BY entity_id
    HAVING length(last3) = 3 AND last3[1] < last3[2] AND last3[2] < last3[3]
) AS s
LEFT JOIN (SELECT entity_id, name, township FROM registry FINAL) AS r USING entity_id
GROUP BY entity_id, last3
ORDER BY last3[3] - last3[1] DESC
LIMIT 100;

-- name: complaint_surge_by_township
-- 各乡镇投诉激增:本周日均投诉 vs 前四周日均基线
-- Complaint surges per township: this week's daily rate vs the previous 4 weeks' daily rate.
-- Township: the complaint's own, else the named entity's registry township.
SELECT township,
       countIf(c.occurred_at >= now64(3) - INTERVAL 7 DAY) AS this_week,
       round(countIf(c.occurred_at < now64(3) - INTERVAL 7 DAY) / 4, 1) AS baseline_per_week,
       round((this_week + 1) / (baseline_per_week + 1), 2) AS ratio
FROM
(
    SELECT c.occurred_at, if(c.township != '', c.township, r.township) AS township
    FROM events_complaint AS c FINAL
    LEFT JOIN (SELECT entity_id, township FROM registry FINAL) AS r ON r.entity_id = c.entity_id
    WHERE c.occurred_at >= now64(3) - INTERVAL 35 DAY
) AS c
GROUP BY township
ORDER BY ratio DESC, this_week DESC;

-- name: median_disposal_time_per_item
-- 各重点事项处置时长中位数(首次发现 → 办结,取 alert_history 的 resolved 时间)
-- Median disposal time per item: first_seen → first transition to resolved (alert_history);
-- falls back to updated_at of resolved/closed alerts without history.
SELECT if(a.item_name = '', '未归口(专班办)', a.item_name) AS item,
       count() AS disposed,
       round(median(dateDiff('second', a.first_seen, if(h.alert_id = '', a.updated_at, h.resolved_at)) / 3600), 1) AS median_hours,
       round(quantile(0.9)(dateDiff('second', a.first_seen, if(h.alert_id = '', a.updated_at, h.resolved_at)) / 3600), 1) AS p90_hours
FROM alerts AS a FINAL
LEFT JOIN
(
    SELECT alert_id, min(at) AS resolved_at FROM alert_history FINAL WHERE to_status = 'resolved' GROUP BY alert_id
) AS h ON h.alert_id = a.alert_id
WHERE a.status IN ('resolved', 'closed')
GROUP BY item
ORDER BY median_hours DESC;

-- name: dead_letters_by_topic_and_reason
-- 本周死信按主题与原因统计(原因取错误信息首行的要点;网关批量消息按每条坏读数的原因计)
-- Dead letters this week per topic and reason (first line of the error, numbers stripped; a gateway
-- batch counts each bad reading's reason, without its "readings[i] (event_id …): " prefix).
SELECT topic,
       replaceRegexpAll(substringUTF8(splitByChar('\n',
           replaceRegexpOne(why, '^readings\\[[0-9]+\\] \\(event_id [^)]*\\): ', ''))[1], 1, 120), '[0-9]+', 'N') AS reason,
       count() AS refusals,
       uniqExact(partition, offset) AS messages,
       min(received_at) AS first,
       max(received_at) AS last
FROM dead_letters FINAL
ARRAY JOIN if(empty(reasons), [error], reasons) AS why
WHERE received_at >= now64(3) - INTERVAL 7 DAY
GROUP BY topic, reason
ORDER BY refusals DESC;

-- name: top_risk_entities
-- 当前高风险主体 TOP 20(在办预警最高分)
-- Top 20 entities by the highest score of their open alerts.
SELECT entity_id, entity_name, entity_kind, township,
       max(score) AS max_score,
       count() AS open_alerts,
       groupUniqArray(level_zh) AS levels,
       groupUniqArray(item_name) AS items
FROM alerts FINAL
WHERE status IN ('pending', 'firing', 'acknowledged', 'disposing')
GROUP BY entity_id, entity_name, entity_kind, township
ORDER BY max_score DESC, open_alerts DESC
LIMIT 20;

-- name: alerts_per_department_by_level
-- 近30天各部门接收预警数(按级别,含牵头与配合)
-- Alerts received per department in the last 30 days, by level (lead and cooperating).
SELECT department,
       countIf(level = 'red') AS red,
       countIf(level = 'orange') AS orange,
       countIf(level = 'yellow') AS yellow,
       countIf(level = 'blue') AS blue,
       count() AS total,
       countIf(lead_department = department) AS as_lead
FROM alerts FINAL
ARRAY JOIN departments AS department
WHERE first_seen >= now64(3) - INTERVAL 30 DAY
GROUP BY department
ORDER BY total DESC;

-- name: event_volume_per_kind_per_day
-- 近14天每日各类事件量(来自物化视图 agg_events_hourly)
-- Events per kind per day, last 14 days (materialized view agg_events_hourly; replays counted).
SELECT toDate(hour) AS day, kind, sum(events) AS events
FROM agg_events_hourly
WHERE hour >= now() - INTERVAL 14 DAY
GROUP BY day, kind
ORDER BY day, kind;

-- name: sensor_channels_with_most_anomalies
-- 异常读数最多的传感器通道(超过各通道近似限值,或电梯故障码非0)
-- Sensor channels with the most out-of-limit readings in the last 7 days (approximate limits
-- from the simulator/regulations; elevator_fault: any non-zero fault code).
SELECT channel, unit,
       countIf(multiIf(channel = 'cold_chain_temp', value > 8,
                       channel = 'storage_temp', value > 25,
                       channel = 'storage_humidity', value > 75,
                       channel = 'boiler_pressure', value > 1.25,
                       channel = 'vessel_pressure', value > 0.8,
                       channel = 'pump_vibration', value > 7.1,
                       channel = 'elevator_fault', value != 0,
                       0)) AS anomalies,
       count() AS readings,
       uniqExact(entity_id) AS entities,
       round(100 * anomalies / readings, 3) AS anomaly_pct
FROM events_sensor FINAL
WHERE occurred_at >= now64(3) - INTERVAL 7 DAY
GROUP BY channel, unit
ORDER BY anomalies DESC, readings DESC;

-- name: inspection_failure_rate_per_item
-- 各重点事项检查不合格率(近90天)
-- Inspection failure rate per item, last 90 days.
SELECT item_id,
       count() AS inspections,
       countIf(outcome = 'fail') AS failed,
       countIf(outcome = 'pass_with_conditions') AS conditional,
       round(100 * failed / inspections, 1) AS fail_pct,
       countIf(worst_severity = 'critical') AS with_critical_violation
FROM events_inspection FINAL
WHERE occurred_at >= now64(3) - INTERVAL 90 DAY
GROUP BY item_id
ORDER BY fail_pct DESC, inspections DESC;

-- name: registry_entities_per_kind_per_township
-- 名录库在册主体:各乡镇 × 主体类型
-- Active registry entities per township and kind.
SELECT township, kind, count() AS entities, countIf(licence = '') AS unlicensed
FROM registry FINAL
WHERE status = 'active'
GROUP BY township, kind
ORDER BY township, entities DESC;

-- name: unassigned_taskforce_entities
-- 未归口主体:无重点事项覆盖、预警转专班办公室决定监管归属的主体
-- Entities whose alerts have no supervision item (routed to the task-force office, 专班办公室).
SELECT entity_id, entity_name, entity_kind, township,
       count() AS alerts,
       countIf(status IN ('pending', 'firing', 'acknowledged', 'disposing')) AS open_alerts,
       max(last_seen) AS last_seen
FROM alerts FINAL
WHERE item_id IS NULL OR has(departments, 'taskforce')
GROUP BY entity_id, entity_name, entity_kind, township
ORDER BY open_alerts DESC, alerts DESC;

-- name: township_complaints_and_video_daily
-- 各乡镇每日投诉与视频告警(物化视图 agg_township_hourly)
-- Complaints and AI video detections per township per day, last 7 days (materialized view).
SELECT toDate(hour) AS day, township, sum(complaints) AS complaints, sum(video_detections) AS video_detections
FROM agg_township_hourly
WHERE hour >= now() - INTERVAL 7 DAY
GROUP BY day, township
ORDER BY day, complaints + video_detections DESC;
