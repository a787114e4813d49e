"""Every sentence an operator reads — help texts, errors, refusals, log lines about outages — in one
catalogue: message id → (Chinese, English) templates with {named} parameters.

`text(id, **params)` renders one in the language of `display.lang` (HISBRIDGE_LANG = zh | en | both;
both = Chinese first, then English). A datetime parameter is shown in Asia/Shanghai with its offset
(`clock.local_text`), so no caller can print a UTC moment to a person by accident.

`OperatorError(id, **params)` is the exception an operator must act on (bad usage or configuration, an
unreachable service, a failed check); the CLI's top-level handler prints it as one line per language and
exits with its code, never a traceback (`hisbridge --debug …` shows one). Quarantine reasons stay values
(chain.quality.Reason): they are data about a record, not something a command stops for.

Adding a message: one entry below; `tests/unit/test_messages.py` checks that both templates take the same
parameters and that every id the code names exists.
"""
from __future__ import annotations

import re
import string
from datetime import date, datetime
from typing import Any, Mapping, NamedTuple

EXIT_CHECK_FAILED = 1   # the command ran and what it checked is not right (reconcile NOT OK, missing columns)
EXIT_USAGE = 2          # the command could not do its job: usage, configuration, an unreachable service

Template = tuple[str, str]

CATALOGUE: Mapping[str, Template] = {
    # --- the command line as a whole -----------------------------------------------------------------
    "cli.help": ("hisbridge：HIS 变更捕获 → 国家值域 → SM4 → Avro → 前置机。",
                 "hisbridge: HIS CDC → national value sets → SM4 → Avro → front-end database."),
    "cli.help_option": ("显示本帮助并退出", "show this message and exit"),
    "cli.version": ("显示版本并退出", "show the version and exit"),
    "cli.debug": ("出错时显示调用栈（排查用）", "show the traceback when a command fails (for diagnosis)"),
    "cli.usage": ("用法错误：{detail}（见 {command} --help）", "usage error: {detail} (see {command} --help)"),
    "cli.internal": ("内部错误：{kind}: {detail}；加 --debug 查看调用栈并报告此问题",
                     "internal error: {kind}: {detail}; rerun with --debug for the traceback and report it"),
    "cli.interrupted": ("已中断", "interrupted"),
    "settings.invalid": ("设置无效：{detail}", "invalid settings: {detail}"),

    # --- services that cannot be reached -------------------------------------------------------------
    "reach.kafka": ("无法连接 Kafka {address}（{detail}）：Kafka 是否在运行？地址由 HISBRIDGE_KAFKA_BOOTSTRAP 设置",
                    "Kafka unreachable at {address} ({detail}): is it running? The address is "
                    "HISBRIDGE_KAFKA_BOOTSTRAP"),
    "reach.connect": ("无法连接 Kafka Connect {address}（{detail}）：Connect 是否在运行？地址由 HISBRIDGE_CONNECT_URL 设置",
                      "Kafka Connect unreachable at {address} ({detail}): is it running? The address is "
                      "HISBRIDGE_CONNECT_URL"),
    "reach.postgres": ("无法连接 PostgreSQL {address}（{detail}）：服务是否在运行？地址由 {knob} 设置",
                       "PostgreSQL unreachable at {address} ({detail}): is it running? The address is {knob}"),
    "reach.his": ("无法连接 HIS 数据库 {address}（{detail}）：服务是否在运行？地址由 {knob} 设置",
                  "the HIS database at {address} is unreachable ({detail}): is it running? The address is {knob}"),
    "log.repeated": ("过去 {seconds} 秒内另有 {count} 次", "{count} more in the last {seconds} s"),

    # --- status -----------------------------------------------------------------------------------------
    "status.help": ("运维总览：连接器、复制槽、积压、水位线、批次与窗口、台账、隔离区",
                    "operator view: connectors, slots, lag, watermark, batches and windows, ledger, quarantine"),
    "status.batches": ("显示的批次数", "batches to show"),
    "status.ledger_rows": ("显示的最近台账行数", "last ledger rows to show"),
    "status.all_topics": ("也列出空闲的消费组和积压为 0 的主题", "list idle groups and topics with zero lag too"),
    "status.json": ("以 JSON 输出同样的各部分", "the same sections as JSON"),
    "status.stack": ("本地栈", "stack"),
    "status.connectors": ("连接器", "connectors"),
    "status.slots": ("复制槽（HIS）", "replication slots (HIS)"),
    "status.lag": ("消费积压", "consumer lag"),
    "status.worker": ("工作进程", "worker"),
    "status.delivery": ("上报：水位线、入库时钟、批次", "delivery: watermark, sink clock, batches"),
    "status.ledger": ("前置机台账：最近上报", "front-end ledger: last flushes"),
    "status.quarantine": ("隔离区（未处理，按规则）", "quarantine (open, by rule)"),
    "status.replays": ("等待参照行的记录与进行中的重发", "held records and replays in flight"),
    "status.unreachable": ("不可达：{detail}", "unreachable: {detail}"),
    "status.slot_lost": ("已失效，需重新快照（见 connectors/README.md）", "LOST: re-snapshot (connectors/README.md)"),

    # --- worker -----------------------------------------------------------------------------------------
    "worker.help": ("运行 Faust 工作进程（转换 + 入库），连接本地或设置中的 Kafka",
                    "run the Faust worker (transform + sink) against the local or configured Kafka"),
    "worker.loglevel": ("日志级别（默认 display.log_level，即 HISBRIDGE_LOG_LEVEL）",
                        "log level [default: display.log_level, HISBRIDGE_LOG_LEVEL]"),
    "worker.background": ("后台运行；日志写入 var/log/worker.log，用 `stack down worker` 停止",
                          "detach; log to var/log/worker.log, stop with `stack down worker`"),
    "worker.started": ("工作进程已启动：pid {pid}，日志 {log}", "worker started: pid {pid}, log {log}"),
    "worker.running": ("工作进程已在运行：pid {pid}，日志 {log}", "worker already running: pid {pid}, log {log}"),
    "worker.wait": ("--background 等待工作进程 /health 应答的秒数", "seconds --background waits for the worker's /health"),
    "worker.spawned_unconfirmed": ("工作进程已派生：pid {pid}，日志 {log}（web 端口为 0，无 /health 可确认）",
                                   "worker spawned: pid {pid}, log {log} (web port 0: no /health to confirm it)"),
    "reference.rebuild": ("参照数据存储 {folder} 为空，从原始主题重建（{behind} 条变更待读）",
                          "reference store {folder} is empty: rebuilding it from the reference topics "
                          "({behind} changes to read)"),
    "reference.relayout": ("参照数据存储 {folder}：源映射对 {lookups} 的行布局已变更（或存储早于布局记录），"
                           "丢弃其行并从头重读 {topics}",
                           "reference store {folder}: the source mapping lays out {lookups} otherwise than the "
                           "store kept them (or the store predates kept layouts): their rows are dropped and "
                           "{topics} read again from the start"),
    "reference.progress": ("参照数据存储重建中：已读 {read} 条变更，还剩 {behind} 条（{rate} 条/秒，约 {eta} 秒）",
                           "reference store rebuild: {read} changes read, {behind} still to read ({rate}/s, "
                           "about {eta} s left)"),
    "reference.ready": ("参照数据存储 {folder}：从 {parts} 个分区读取 {read} 条变更，用时 {seconds} 秒",
                        "reference store {folder}: {read} changes read from {parts} partitions in {seconds} s"),
    "worker.start_failed": ("工作进程未能启动：{reason}；日志 {log}", "the worker did not start: {reason}; log {log}"),

    # --- config, stack, catalog, sim ------------------------------------------------------------------
    "config.help": ("解析后的设置（环境变量优先于设置文件，设置文件优先于默认值）",
                    "the resolved settings (environment over the settings file over defaults)"),
    "config.show": ("打印每个设置的值（密钥隐藏）及其来源", "print every setting, its value (secrets masked) and its source"),
    "config.json": ("每个设置输出一个 JSON 对象", "one JSON object per setting"),
    "stack.help": ("启动、停止和查看本地栈（状态在 var/ 下）", "start, stop and inspect the local stack (state under var/)"),
    "stack.up": ("启动全部（或指定的）组件；已运行的不动", "start all (or the named) components; running ones are left alone"),
    "stack.down": ("停止全部（或指定的）组件，包括后台工作进程",
                   "stop all (or the named) components, the background worker included"),
    "stack.status": ("运行了什么、端口、pid、启动时间；有组件停止时退出码为 1",
                     "what runs, on which port, with which pid, since when; exit 1 when a stack component is down"),
    "stack.rss": ("同时显示常驻内存（进程树）", "also show resident memory (process tree)"),
    "stack.started": ("栈已启动：{count} 个组件，用时 {seconds} 秒", "stack up: {count} started in {seconds}s"),
    "stack.already": ("栈已启动：全部组件都在运行", "stack up: everything was already running"),
    "stack.failed": ("本地栈出错：{detail}", "local stack: {detail}"),
    "catalog.help": ("目录：表、字段、值域、质控规则及由其生成的文件",
                     "the catalog: tables, fields, value sets, quality rules and what is generated from them"),
    "catalog.show": ("打印目录（或一张表）", "print the catalog (or one TABLE)"),
    "catalog.json": ("机器可读的 JSON", "machine-readable JSON"),
    "catalog.sample": ("TABLE 的 N 条合法明文记录（JSON 行）", "N valid plain records of TABLE as JSON lines"),
    "catalog.count": ("记录条数", "how many records"),
    "catalog.seed": ("随机种子", "random seed"),
    "catalog.validate": ("检查标准输入中的明文记录（JSON 行），每条输出一行 {{ok, reasons}}；退出码 0",
                         "check plain records (JSON lines on stdin); one {{ok, reasons}} line per record; exit 0"),
    "catalog.report_time": ("记录的上报时刻（带时区的 ISO 时间，默认现在）",
                            "the moment the records are reported at (ISO with an offset; default now)"),
    "catalog.build": ("由目录生成 schemas/avro/<table>.avsc 和 schemas/frontend/frontend.sql",
                      "write schemas/avro/<table>.avsc and schemas/frontend/frontend.sql from the catalog"),
    "catalog.check": ("不写文件；生成文件过期时退出码为 1", "write nothing; exit 1 if generated files are out of date"),
    "catalog.diff": ("目录 NEW 相对 OLD 的改动（目录或单个文件）", "what catalog NEW changes relative to OLD "
                     "(folders or single files)"),
    "catalog.migrate_frontend": ("前置机表与目录比对：列出（--apply 则执行）为目录新增字段所需的 ALTER TABLE",
                                 "the front-end tables against the catalog: the ALTER TABLE statements that add "
                                 "the fields a revision added (run with --apply)"),
    "catalog.migrate_apply": ("在一个事务中执行这些语句", "run the statements, in one transaction"),
    "catalog.migrate_missing_table": ("前置机缺少表 {table}：工作进程下次连接时创建",
                                      "the front-end has no table {table}: the worker creates it at its next connect"),
    "catalog.migrate_nullable": ("{table}：{columns} 在目录中必填，但表中已有数据，故按可空添加",
                                 "{table}: {columns} required in the catalog, added nullable (the table holds "
                                 "rows without them)"),
    "catalog.migrate_extra": ("{table}：表中有目录已无的字段 {columns}（保留不动）",
                              "{table}: columns {columns} are no longer in the catalog (left as they are)"),
    "catalog.migrate_none": ("前置机表与目录一致，无需变更", "the front-end tables hold every catalog field: nothing to do"),
    "catalog.migrate_applied": ("已为 {tables} 张表添加 {columns} 个字段", "added {columns} column(s) to {tables} table(s)"),
    "catalog.migrate_pending": ("{tables} 张前置机表缺少目录字段：确认上面的语句后用 --apply 执行",
                                "{tables} front-end table(s) lack catalog fields: review the statements above, then "
                                "run with --apply"),
    "catalog.migrate_key": ("{tables} 缺少主键字段：无法用 ALTER 添加，需重建该表",
                            "{tables} lack(s) primary-key columns: no ALTER can add them, the table must be rebuilt"),
    "catalog.batch": ("批次时间为 MOMENT 的 TABLE 记录属于哪个批次", "the batch a record of TABLE with batch-time MOMENT "
                      "belongs to"),
    "catalog.batch_error": ("无法分批：{detail}", "cannot assign a batch: {detail}"),
    "catalog.stale": ("已过期：{path}", "stale {path}"),
    "catalog.wrote": ("已写入：{path}", "wrote {path}"),
    "catalog.up_to_date": ("生成的文件都是最新的", "generated files are up to date"),
    "catalog.out_of_date": ("{count} 个生成文件已过期：运行 hisbridge catalog build",
                            "{count} generated file(s) out of date: run hisbridge catalog build"),
    "sim.help": ("模拟医院 HIS：PostgreSQL（schema his）或 MariaDB/MySQL（数据库 his）",
                 "the simulated hospital HIS in PostgreSQL (schema his) or MariaDB/MySQL (database his)"),
    "sim.init": ("创建 schema his 及其字典（可重复执行）", "create schema his with its dictionaries (idempotent)"),
    "sim.seed": ("随机种子", "random seed"),
    "sim.reset": ("先删除 schema his（模拟数据全部丢失）", "drop schema his first (all simulated data is lost)"),
    "sim.ready": ("schema his 就绪（{tables} 张表，{full}）", "schema his ready ({tables} tables, {full})"),
    "sim.day": ("为一个或多个上报日生成并载入活动", "generate and load activity for one or more report days"),
    "sim.date": ("上报日 D：活动在 [D-1 18:00, D 18:00)", "report day D: activity in [D-1 18:00, D 18:00)"),
    "sim.days": ("模拟 D、D+1、……", "simulate D, D+1, …"),
    "sim.visits": ("每天门诊人次（入院 = 人次/25）", "outpatient visits a day (admissions = visits/25)"),
    "sim.bad_share": ("植入坏数据的比例", "share of planted bad data"),
    "sim.start": ("改写窗口起点（本地时间）", "override the window start (local time)"),
    "sim.end": ("改写窗口终点（例如 D 22:00，跨过 18:00 进入上报窗口）",
                "override the window end (e.g. D 22:00 to run across 18:00 into the delivery window)"),
    "sim.live": ("按加速时钟实时插入，而不是一次性回填", "insert on an accelerated clock instead of back-dating at once"),
    "sim.speed": ("每真实秒的模拟秒数（--live）", "simulated seconds per real second (--live)"),
    "sim.manifest": ("清单（实体、缺陷）写到这里；默认 var/sim/manifest-<start>.json",
                     "write the manifest (entities, defects) here; default var/sim/manifest-<start>.json"),
    "sim.end_before_start": ("--end 必须晚于 --start", "--end must be after --start"),
    "sim.window": ("窗口 [{start}, {end})：{events} 个事件，{entities} 个实体（{bad} 个植入缺陷）；清单 {manifest}",
                   "window [{start}, {end}): {events} events, {entities} entities ({bad} with a planted defect); "
                   "manifest {manifest}"),
    "sim.progress": ("  模拟时钟 {at}：已应用 {count} 个变更", "  sim clock {at}: {count} changes applied"),
    "sim.live_done": ("已实时应用 {count} 个变更", "applied {count} changes live"),
    "sim.backdated": ("已回填 {count} 个变更，用时 {seconds} 秒", "back-dated {count} changes in {seconds}s"),
    "sim.indicators": ("回填月度（12 月还有年度）评审指标", "back-fill monthly (and, for December, yearly) evaluation "
                       "indicators"),
    "sim.from": ("起始月份 YYYY-MM（通知要求从 2022-01 回填）", "first month YYYY-MM (the notice back-fills from 2022-01)"),
    "sim.to": ("结束月份 YYYY-MM", "last month YYYY-MM"),
    "sim.detail": ("同时回填缩小规模的明细历史（每月 11 日起 3 个批次日，参数为每日门诊人次），月度指标由明细推算",
                   "also back-fill a scaled-down detail history (3 batch days from each month's 11th; the value is "
                   "visits a day); the monthly figures are derived from it"),
    "sim.detail_done": ("明细：回填 {count} 个变更（{months} 个月）", "detail: {count} changes back-dated ({months} months)"),
    "sim.indicators_done": ("指标：提交 {count} 行（已有的期间保留）", "indicators: {count} rows offered (existing "
                            "periods kept)"),

    "demo.no_past_day": ("演示已模拟到 {last} 为止的每一天：演示只模拟过去的日子；`make clean` 重新开始，"
                         "或首次运行时用 DEMO_DAY=YYYY-MM-DD 从更早的一天开始",
                         "the demo has simulated every past day up to {last}: it simulates past days only; "
                         "`make clean` starts afresh, or DEMO_DAY=YYYY-MM-DD on a first run starts further back"),

    # --- names an operator types ---------------------------------------------------------------------
    "table.unknown": ("目录中没有表 {table}{hint}；可用的表：{known}",
                      "the catalog has no table {table!r}{hint_en}; known tables: {known}"),
    "batch.invalid": ("批次名称 {batch!r} 无效：日批次写 YYYY-MM-DD，月批次 YYYY-MM，年批次 YYYY（例如 {example}）",
                      "{batch!r} is not a batch name: daily YYYY-MM-DD, monthly YYYY-MM, yearly YYYY "
                      "(e.g. {example})"),
    "batch.cadence": ("表 {table} 按{cadence}分批，批次 {batch!r} 不是{cadence}批次（应写 {pattern}）",
                      "table {table} is batched {cadence}: {batch!r} is not a {cadence} batch (write {pattern})"),
    "moment.invalid": ("{option} 的时间 {value!r} 无效：请写带时区的 ISO 时间，例如 {example}",
                       "{option}: {value!r} is not an ISO moment with an offset, e.g. {example}"),

    # --- flush -------------------------------------------------------------------------------------------
    "window.before": ("拒绝写入：{cadence}批次 {batch} 的上报窗口 {start} 才打开（现在 {now}）；操作员可用 "
                      "--force --operator 姓名 --reason 原因 强制",
                      "refused: the delivery window of {cadence} batch {batch} opens {start} (now {now}); an "
                      "operator may use --force --operator NAME --reason WHY"),
    "window.closed": ("拒绝写入：现在 {now} 没有打开的上报窗口（{cadence}批次 {batch} 的窗口为 {start} 至 {end}）；"
                      "操作员可用 --force --operator 姓名 --reason 原因 强制",
                      "refused: no delivery window is open at {now} ({cadence} batch {batch}: window {start} to "
                      "{end}); an operator may use --force --operator NAME --reason WHY"),
    "window.backfill_before": ("拒绝写入：{cadence}批次 {batch} 早于补报起点 {since}",
                               "refused: {cadence} batch {batch} is before the back-fill start {since}"),
    "window.open": ("在批次 {window} 的上报窗口内", "inside the delivery window of batch {window}"),
    "window.backfill": ("在 {carrier} 的{window}窗口内补报", "back-fill in the {window} window of {carrier}"),
    "window.forced": ("由 {operator} 强制：{reason}", "forced by {operator}: {reason}"),
    "flush.help": ("在上报窗口内把一个已暂存的批次写入前置机表（--plan：只看现在可上报什么）",
                   "flush a staged batch into its front-end table inside its delivery window (--plan: only show "
                   "what may be flushed now)"),
    "flush.table": ("目录表名，例如 mjzzlxx", "catalog table, e.g. mjzzlxx"),
    "flush.batch": ("批次：YYYY-MM-DD（日）、YYYY-MM（月）或 YYYY（年）", "batch: YYYY-MM-DD, YYYY-MM or YYYY"),
    "flush.force": ("绕过上报窗口（仅限操作员；记入日志和台账）",
                    "bypass the delivery window (operators only; logged and ledgered)"),
    "flush.operator": ("强制上报的操作员（--force 必填）", "who forces the flush (required with --force)"),
    "flush.reason": ("强制上报的原因（--force 必填）", "why the flush is forced (required with --force)"),
    "flush.now": ("用这个带时区的时刻代替时钟（演示/测试），例如 2026-12-01 18:30:00+08:00",
                  "this moment with an offset instead of the clock (demo/testing), e.g. 2026-12-01 18:30:00+08:00"),
    "flush.plan": ("只显示现在可上报的批次", "only show what may be flushed now"),
    "flush.watermark": ("与 --plan 同用：假定所有表的源水位为此时刻", "with --plan: assume this moment as every table's "
                        "source watermark"),
    "flush.needs_target": ("请同时给出 --table 和 --batch（或用 --plan 查看可上报的批次）",
                           "--table and --batch are both required (or use --plan to see what may be flushed)"),
    "flush.force_needs_who": ("--force 需要 --operator 和 --reason（两者都记入台账）",
                              "--force needs --operator and --reason (both go into the ledger)"),

    # --- city platform role -------------------------------------------------------------------------------
    "city.help": ("市级平台角色：汇集本市各医院上传的数据，二次质控后于 D 22:00 – D+1 03:00 报送省平台",
                  "the city platform role: its hospitals' uploads, the city's second check, relayed to the province "
                  "in D 22:00 – D+1 03:00"),
    "city.report.help": ("按医院列出一个批次中市级二次质控退回的行及原因（可退回医院）",
                         "per hospital, what the city's second check rejected in a batch and why (to go back to "
                         "the hospital)"),
    "city.batch": ("批次：YYYY-MM-DD", "batch: YYYY-MM-DD"),
    "city.json": ("以 JSON 输出", "print JSON"),

    # --- reconcile ---------------------------------------------------------------------------------------
    "reconcile.help": ("按表核对一个批次：应有、暂存、待上报、已上报、隔离（按规则），每次上报与前置机的行；"
                       "不一致时退出码为 1。不带 --sim-* 时应有键取自 HIS 本身（按源映射推导的查询，以 CDC 账号读取），"
                       "HIS 有而下游各处都没有的键为 missing",
                       "per table of a batch: expected, staged, pending, delivered, quarantined (by rule), every "
                       "flush against the front-end rows; exit 1 unless it reconciles. Without --sim-* the expected "
                       "keys come from the HIS itself (a query derived from the source mapping, read as the CDC "
                       "role): a key in the HIS and nowhere downstream is missing"),
    "reconcile.show": ("每张表列出的 missing / unexpected 键的个数", "missing / unexpected keys listed per table"),
    "reconcile.expected_his": ("应有 = HIS 本身（{kind} {address}，以 {user} 读取）",
                               "expected = the HIS ({kind} {address} as {user})"),
    "reconcile.unmatched": ("注意：{count} 条隔离记录没有目录表或业务键，无法与 HIS 键对应，例如 {where}",
                            "note: {count} quarantine entries without a catalog table or key (not matched to a HIS "
                            "key), e.g. {where}"),
    "reconcile.no_his_query": ("无法由源映射推导 HIS 查询：{detail}", "cannot derive the HIS query from the mapping: {detail}"),
    "reconcile.batch": ("批次：YYYY-MM-DD（日）、YYYY-MM（月）或 YYYY（年）",
                        "batch name: YYYY-MM-DD (daily), YYYY-MM (monthly), YYYY (yearly)"),
    "reconcile.table": ("目录表（可多次）；默认：该周期的所有表", "catalog table(s); default: every table of that cadence"),
    "reconcile.sim_seed": ("与该种子的模拟 HIS 比较（演示）：应有的键和植入的缺陷",
                           "compare with the simulated HIS of this seed (the demo): expected keys and planted defects"),
    "reconcile.sim_visits": ("模拟 HIS 每天的门诊人次", "the simulated HIS's visits a day"),
    "reconcile.sim_bad_share": ("模拟 HIS 植入坏数据的比例", "the simulated HIS's share of planted bad data"),
    "reconcile.sim_until": ("模拟活动在 D 日几点停止（22 = 含演示的晚间）",
                            "where the simulated activity stopped on day D (22 = the demo's evening included)"),
    "reconcile.expected_sim": ("应有 = 模拟 HIS（种子 {seed}）", "expected = the simulated HIS (seed {seed})"),
    "reconcile.ok": ("核对一致：批次 {batch}，{count} 张表", "reconciliation OK: batch {batch}, {count} table(s)"),
    "reconcile.sim_daily": ("--sim-seed 只能核对日批次（YYYY-MM-DD）", "--sim-seed compares daily batches only (YYYY-MM-DD)"),
    "reconcile.not_ok": ("核对不一致：批次 {batch} 的 {tables}（见上表）",
                         "reconciliation NOT OK: {tables} of batch {batch} (see above)"),

    # --- SM4 ---------------------------------------------------------------------------------------------
    "crypto.help": ("SM4（GB/T 32907）字段加解密，使用管道自己的设置（sm4.*）",
                    "SM4 (GB/T 32907) field encryption with the pipeline's own settings (sm4.*)"),
    "crypto.encrypt": ("逐行加密标准输入（UTF-8）", "encrypt each stdin line (UTF-8)"),
    "crypto.decrypt": ("逐行解密标准输入（十六进制大小写均可）", "decrypt each stdin line (hex in either case)"),
    "crypto.mode": ("分组模式（默认 sm4.mode，即 HISBRIDGE_SM4_MODE）", "block mode [default: sm4.mode, HISBRIDGE_SM4_MODE]"),
    "crypto.encoding": ("密文编码（默认 sm4.encoding）", "ciphertext encoding [default: sm4.encoding]"),
    "crypto.iv_option": ("CBC 初始向量，32 个十六进制字符（默认 sm4.iv）",
                         "CBC initialisation vector, 32 hex characters [default: sm4.iv]"),
    "crypto.uppercase": ("十六进制密文大写或小写（默认 sm4.uppercase）", "upper- or lowercase hex ciphertext "
                         "[default: sm4.uppercase]"),
    "crypto.key_file_option": ("存放 32 位十六进制密钥的文件（默认 HISBRIDGE_SM4_KEY_FILE，其次 HISBRIDGE_SM4_KEY）",
                               "file holding the 32-hex-character key [default: HISBRIDGE_SM4_KEY_FILE, then "
                               "HISBRIDGE_SM4_KEY]"),
    "crypto.no_key": ("没有 SM4 密钥：请设置 HISBRIDGE_SM4_KEY_FILE（密钥文件）或 HISBRIDGE_SM4_KEY（32 个十六进制字符）",
                      "no SM4 key: set HISBRIDGE_SM4_KEY_FILE (a key file) or HISBRIDGE_SM4_KEY (32 hex characters)"),
    "crypto.key_file": ("SM4 密钥文件 {path} 不存在或不是文件：检查 HISBRIDGE_SM4_KEY_FILE 或 --key-file",
                        "SM4 key file {path} does not exist or is not a file: check HISBRIDGE_SM4_KEY_FILE or "
                        "--key-file"),
    "crypto.key": ("SM4 密钥不可用：{detail}", "SM4 key unavailable: {detail}"),
    "crypto.settings": ("SM4 设置无效：{detail}", "invalid SM4 settings: {detail}"),
    "crypto.iv": ("--iv 须为 32 个十六进制字符", "--iv must be 32 hexadecimal characters"),
    "crypto.line": ("第 {line} 行：{detail}", "line {line}: {detail}"),

    # --- catalog, mapping, schedule files ---------------------------------------------------------------
    "catalog.invalid": ("目录文件有误：{detail}", "the catalog is invalid: {detail}"),
    "mapping.invalid": ("映射文件有误：{detail}", "the source mapping is invalid: {detail}"),
    "schedule.invalid": ("上报时间表有误：{detail}", "the delivery schedule is invalid: {detail}"),
    "mappings.help": ("医院的源映射（HIS 表 → 目录表）及其值域映射", "the hospital's source mapping (HIS tables → "
                      "catalog tables) and its value maps"),
    "mappings.validate": ("按目录加载映射并列出不在国家值域中的映射码；--against-his 再按 HIS 的 information_schema "
                          "检查每个表和列；有问题时退出码为 1",
                          "load the mapping against the catalog and list value-map codes outside the national value "
                          "sets; --against-his also checks every table and column against the HIS's "
                          "information_schema; exit 1 on any problem"),
    "mappings.check": ("先按 HIS 检查映射引用的表和列，再查询 HIS 中值域映射未覆盖的本地码及行数；有问题时退出码为 1",
                       "check the tables and columns the mapping names against the HIS, then query the HIS for "
                       "local values no value map covers, with row counts; exit 1 on any"),
    "mappings.mapping": ("映射文件（默认 HISBRIDGE_MAPPING 或 schemas/mapping/demo_hospital.yaml）",
                         "mapping file [default: HISBRIDGE_MAPPING or schemas/mapping/demo_hospital.yaml]"),
    "mappings.against_his": ("同时按 HIS 的 information_schema 检查表、列和类型",
                             "also check tables, columns and types against the HIS's information_schema"),
    "mappings.dsn": ("HIS 连接（默认 HISBRIDGE_HIS_DSN；MariaDB/MySQL 为 HISBRIDGE_HIS_MARIADB_DSN）",
                     "HIS connection [default: HISBRIDGE_HIS_DSN, or HISBRIDGE_HIS_MARIADB_DSN for MariaDB/MySQL]"),
    "mappings.engine": ("HIS 数据库类型（默认 source.kind，即 HISBRIDGE_HIS_KIND）",
                        "HIS database engine [default: source.kind, HISBRIDGE_HIS_KIND]"),
    "mappings.json": ("每个未映射的值输出一个 JSON 对象", "one JSON object per unmapped value"),
    "mappings.summary": ("{path}：映射 {tables} 张表（{names}），{valuemaps} 个值域映射，机构 {org}",
                         "{path}: {tables} table(s) mapped ({names}), {valuemaps} value map(s), organisation {org}"),
    "mappings.relayout": ("以此映射重启工作进程时，参照数据存储 {folder} 将丢弃 {lookups} 的行并从头重读 {topics}（行布局已变更）",
                          "a worker restarted on this mapping drops the rows of {lookups} in its reference store "
                          "{folder} and reads {topics} again from the start (laid out otherwise)"),
    "mappings.valuemap_warning": ("警告：{detail}", "warning: {detail}"),
    "mappings.valuemap_problems": ("{count} 个值域映射码不在国家值域中（见上）",
                                   "{count} value-map code(s) outside the national value sets (see above)"),
    "mappings.unmapped": ("HIS 中有 {count} 个本地码没有映射（见上）", "{count} local value(s) in the HIS have no mapping "
                          "(see above)"),
    "mappings.all_mapped": ("HIS 中每个本地码都有映射", "every local value in the HIS has a mapping"),
    "mapping.missing_table": ("{where}: HIS 中没有表 {source}{hint}", "{where}: the HIS has no table {source}{hint_en}"),
    "mapping.missing_column": ("{where}: HIS 表 {source} 没有列 {column}{hint}",
                               "{where}: HIS table {source} has no column {column!r}{hint_en}"),
    "mapping.type_mismatch": ("{where}: {source}.{column} 的类型 {his_type} 不能填入 {table}.{field}（{field_type}）",
                              "{where}: {source}.{column} is {his_type}, which cannot feed {table}.{field} "
                              "({field_type})"),
    "mapping.his_ok": ("{path}：映射引用的 {tables} 张 HIS 表、{columns} 个列均存在且类型相容",
                       "{path}: all {tables} HIS tables and {columns} columns the mapping names exist with "
                       "compatible types"),
    "mapping.his_problems": ("{path}：{count} 处与 HIS 不符", "{path}: {count} problem(s) against the HIS"),

    # --- connectors --------------------------------------------------------------------------------------
    "connectors.help": ("Kafka Connect 上的 Debezium 源连接器", "Debezium source connectors on Kafka Connect"),
    "connectors.apply": ("创建或更新连接器，等待连接器和任务都为 RUNNING；捕获的表默认取自源映射（含参考表）",
                         "create or update the connector and wait until connector and task are RUNNING; the "
                         "tables captured are the source mapping's (reference tables included) by default"),
    "connectors.status": ("显示一个或全部连接器的状态", "show the state of one or all connectors"),
    "connectors.delete": ("删除连接器（复制槽保留；停用时在 HIS 中删除）",
                          "delete a connector (its replication slot stays; drop it in the HIS when retiring it)"),
    "connectors.render": ("打印 apply 将提交的配置（密码为文件引用）",
                          "print the configuration `apply` would PUT (the password is a file reference)"),
    "connectors.name": ("连接器名称（也用于复制槽和发布）[默认：source.connector，即 HISBRIDGE_CONNECTOR_NAME]",
                        "connector name (also names slot and publication) [default: source.connector, "
                        "HISBRIDGE_CONNECTOR_NAME]"),
    "connectors.kind": ("HIS 数据库类型 = 模板 connectors/his-<kind>.json [默认：source.kind]",
                        "HIS database kind = template connectors/his-<kind>.json [default: source.kind]"),
    "connectors.tables": ("要捕获的 schema.table 列表（逗号分隔）[默认：HISBRIDGE_CAPTURE_TABLES，否则源映射读取的全部表]",
                          "comma-separated schema.table list to capture [default: HISBRIDGE_CAPTURE_TABLES, else "
                          "every table the source mapping reads]"),
    "connectors.heartbeat": ("心跳间隔毫秒 [默认：source.heartbeat_ms]", "heartbeat interval, ms [default: "
                             "source.heartbeat_ms]"),
    "connectors.prepare": ("先准备 HIS：PostgreSQL 把表交给捕获组并设 REPLICA IDENTITY FULL；MariaDB/MySQL 检查时区并授予 SELECT",
                           "prepare the HIS first: PostgreSQL hands the tables to the capture group and sets REPLICA "
                           "IDENTITY FULL; MariaDB/MySQL checks the server time zone and grants SELECT on the tables"),
    "connectors.timeout": ("等待 RUNNING 的秒数", "seconds to wait for RUNNING"),
    "connectors.applied": ("连接器 {name}：{outcome}，RUNNING，捕获 {count} 张表；新增 {added}；移除 {removed}",
                           "connector {name}: {outcome}, RUNNING, {count} tables captured; added {added}; "
                           "removed {removed}"),
    "connectors.deleted": ("连接器 {name} 已删除", "connector {name}: deleted"),
    "connectors.absent": ("连接器 {name} 不存在", "connector {name}: did not exist"),
    "connectors.no_tables": ("没有要捕获的表：映射未列出 HIS 表，请用 --tables schema.table,… 指定",
                             "no tables to capture: the mapping names none; pass --tables schema.table,…"),
    "connectors.failed": ("连接器 {name} 未能运行：{detail}", "connector {name} is not running: {detail}"),
    "connectors.error": ("Kafka Connect 报错：{detail}", "Kafka Connect: {detail}"),
    # --- evaluation indicators ----------------------------------------------------------------------
    "indicators.help": ("三级医院评审指标：由明细数据推算，并与上报的评审数据核对",
                        "tertiary-evaluation indicators: derived from the detail rows, checked against the reported ones"),
    "indicators.derive": ("按定义（schemas/indicators）由某月的明细数据推算各指标的分子、分母和值",
                          "derive every defined indicator's numerator, denominator and value from a month's detail rows"),
    "indicators.check": ("某月上报的评审数据与推算值逐行比较；超出容差的为 indicator_mismatch，有则退出码为 1",
                         "compare a month's reported evaluation rows with the derived figures; beyond tolerance is "
                         "indicator_mismatch (exit 1 when any)"),
    "indicators.month": ("统计月份 YYYY-MM", "statistics month YYYY-MM"),
    "indicators.source": ("明细来源：delivered = 前置机已上报的行（省平台核对的依据），staged = 暂存库（含待上报）",
                          "detail rows from: delivered = the front-end's rows (what the province checks against), "
                          "staged = the staging database (pending rows included)"),
    "indicators.json": ("机器可读输出", "machine-readable output"),
    "indicators.bad_month": ("月份 {month!r} 无效：应为 YYYY-MM，且不早于 2022-01",
                             "month {month!r} is invalid: YYYY-MM, not before 2022-01"),
    "indicators.bad_definitions": ("指标定义有误：{detail}", "indicator definitions: {detail}"),
    "indicators.summary": ("{month}：{checked} 行已核对，{mismatched} 行不符", "{month}: {checked} rows checked, {mismatched} mismatched"),
    # --- quarantine workbench and replays ------------------------------------------------------------
    "quarantine.help": ("隔离区：查看、说明、驳回、修复后重发", "quarantined records: list, show, dismiss, replay after a fix"),
    "quarantine.list": ("先按规则和表计数，再列出条目", "counts by rule and table, then the entries"),
    "quarantine.show": ("一个条目：原因（中英文）、来源位置、批次、记录（身份字段为密文）",
                        "one entry: reasons (Chinese and English), source position, batch, the record (ciphertext)"),
    "quarantine.dismiss": ("操作员决定该条目无需上报（记下谁、为什么）",
                           "an operator's decision that an open entry needs no delivery (who and why kept)"),
    "quarantine.replay": ("用当前映射、值域和规则从源消息重跑 open 条目：通过的在下一窗口上报（台账 replay），其余保持 open",
                          "re-run open entries from their source messages through the current mapping, value maps "
                          "and rules: what passes goes out in the next window (ledger kind replay), the rest stays open"),
    "quarantine.table": ("目录表名，例如 mjzzlxx", "catalog table, e.g. mjzzlxx"),
    "quarantine.batch": ("批次：YYYY-MM-DD、YYYY-MM 或 YYYY", "batch: YYYY-MM-DD, YYYY-MM or YYYY"),
    "quarantine.rule": ("质控规则，例如 unmapped_code、missing_lookup", "quality rule, e.g. unmapped_code, missing_lookup"),
    "quarantine.state": ("条目状态", "entry state"),
    "quarantine.limit": ("计数之后最多列出的条目数", "entries to list after the counts"),
    "quarantine.json": ("机器可读输出", "machine-readable output"),
    "quarantine.decrypt": ("用 SM4 密钥解密身份字段（只显示在终端，从不写日志）",
                           "decrypt identity fields with the SM4 key (terminal only, never logged)"),
    "quarantine.ids": ("只重跑这些条目", "only these entries"),
    "quarantine.operator": ("操作员（记入台账）", "who does it (goes into the ledger)"),
    "quarantine.reason": ("原因（记入台账）", "why (goes into the ledger)"),
    "quarantine.dismiss_reason": ("为什么无需上报", "why it needs no delivery"),
    "quarantine.no_entry": ("隔离条目 {id} 不存在", "no quarantine entry {id}"),
    "quarantine.not_open": ("隔离条目 {id} 不存在或不是 open 状态", "quarantine entry {id} does not exist or is not open"),
    "quarantine.no_key": ("没有 SM4 密钥，无法解密：{detail}", "no SM4 key to decrypt with: {detail}"),
    "quarantine.nothing": ("没有匹配的 open 隔离条目，未发送任何记录", "no open entries match: nothing sent"),
    "replay.help": ("经重放主题重新上报（与实时流量分开，台账类型 replay）",
                    "re-submissions through the replay topic, apart from live traffic, ledgered as replay"),
    "replay.batch": ("重新上报一个已上报的批次：每行在下一窗口以新的 report_datetime 再发一次",
                     "re-submit a delivered batch: every row again, with a new report_datetime, in the next window"),
    "replay.from_raw": ("用当前映射重跑原始变更", "re-run raw changes through the current mapping"),
    "replay.connector": ("要重跑其原始主题的 Debezium 连接器（与 --from-raw 同用）",
                         "the Debezium connector whose raw topics to re-run (with --from-raw)"),
    "replay.since": ("此时刻之后写入的变更（ISO；无时区时按 Asia/Shanghai）",
                     "changes written since this ISO moment (Asia/Shanghai unless it has an offset)"),
    "replay.table": ("目录表名，例如 mjzzlxx", "catalog table, e.g. mjzzlxx"),
    "replay.batch_name": ("批次：YYYY-MM-DD、YYYY-MM 或 YYYY", "batch: YYYY-MM-DD, YYYY-MM or YYYY"),
    "replay.operator": ("操作员（记入台账）", "who replays (goes into the ledger)"),
    "replay.reason": ("原因（记入台账）", "why (goes into the ledger)"),
    "replay.raw_needs": ("--from-raw 需要 --connector、--since、--operator 和 --reason",
                         "--from-raw needs --connector, --since, --operator and --reason"),
    "replay.since_invalid": ("--since 不是 ISO 时刻：{value}", "--since is not an ISO moment: {value}"),
    "replay.no_connector": ("找不到连接器 {connector}（Kafka Connect {url}）", "no connector {connector} (Kafka Connect {url})"),
    "replay.not_delivered": ("{table} 批次 {batch} 尚未上报，无可重发", "batch {batch} of {table} has not been delivered: nothing to replay"),
}

class Both(NamedTuple):
    """A parameter that exists in both languages (a quality reason, a bilingual settings error)."""
    zh: str
    en: str


_CADENCE_ZH = {"daily": "日", "monthly": "月", "yearly": "年", "backfill": "补报"}


def cadence_name(cadence: str) -> Both:
    """daily → 日 / daily: a cadence as a message parameter."""
    return Both(_CADENCE_ZH.get(cadence, cadence), cadence)


def _shown(value: Any, lang: str) -> Any:
    """A parameter as a person reads it in `lang`: moments in Asia/Shanghai with the offset."""
    if isinstance(value, Both):
        return value.zh if lang == "zh" else value.en
    if isinstance(value, datetime):
        from hisbridge.clock import local_text
        return local_text(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def placeholders(template: str) -> set[str]:
    return {name.split("!")[0].split(".")[0] for _, name, _, _ in string.Formatter().parse(template) if name}


def current_language() -> str:
    from hisbridge.settings import display_language
    return display_language()


def render(message_id: str, params: Mapping[str, Any], lang: str | None = None, joiner: str = "\n") -> str:
    """One catalogue message in `lang` (default display.lang); `both` joins Chinese and English."""
    zh, en = CATALOGUE[message_id]
    lang = lang or current_language()
    parts = {"zh": [("zh", zh)], "en": [("en", en)], "both": [("zh", zh), ("en", en)]}[lang]
    return joiner.join(template.format(**{k: _shown(v, part) for k, v in params.items()}) for part, template in parts)


def text(message_id: str, /, lang: str | None = None, **params: Any) -> str:
    return render(message_id, params, lang)


def _first_clause(text: str) -> str:
    return re.split(r"；|; ", text, maxsplit=1)[0]


def help_text(message_id: str, lang: str | None = None, clause: bool = False) -> str:
    """A help text: Chinese / English on one line in `both`; `clause`: each language's first clause only
    (a command list)."""
    if not clause:
        return render(message_id, {}, lang, joiner=" / ")
    lang = lang or current_language()
    return " / ".join(_first_clause(render(message_id, {}, part)) for part in
                      {"zh": ["zh"], "en": ["en"], "both": ["zh", "en"]}[lang])


class OperatorError(Exception):
    """Something an operator must fix before the command can succeed: a catalogue message and an exit code."""

    def __init__(self, message_id: str, /, exit_code: int = EXIT_USAGE, **params: Any) -> None:
        if message_id not in CATALOGUE:
            raise KeyError(f"no message {message_id!r} in hisbridge.messages.CATALOGUE")
        self.message_id, self.params, self.exit_code = message_id, params, exit_code
        super().__init__(message_id)

    def text(self, lang: str | None = None) -> str:
        return render(self.message_id, self.params, lang)

    def __str__(self) -> str:
        # log lines and foreign handlers get English; the CLI prints `text()` in the operator's language
        return render(self.message_id, self.params, "en")
