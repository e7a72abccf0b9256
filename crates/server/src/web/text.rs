//! The words of the pages, in Chinese (the default) and English: one key,
//! one text per language.

/// (key, 中文, English).
const TEXTS: &[(&str, &str, &str)] = &[
    ("brand", "医疗救助一件事", "Jiuzhu medical assistance"),
    ("skip", "跳到正文", "Skip to the content"),
    ("preferences", "显示设置", "Display settings"),
    ("large_type", "大字版", "Large type"),
    ("normal_type", "标准字号", "Normal type"),
    ("menu", "工作台菜单", "Staff menu"),
    ("footer", "医疗保障局 · 医疗救助", "Medical Security Bureau · medical financial assistance"),
    ("home_title", "医疗救助", "Medical financial assistance"),
    (
        "home_text",
        "基本医保报销后，符合条件的困难群众的个人自付部分由医疗救助按政策再报销。",
        "After basic medical insurance has paid, medical assistance pays part of what eligible people still owe, under the bureau's policy.",
    ),
    ("staff_login", "工作人员登录", "Staff login"),
    ("user_name", "用户名", "User name"),
    ("password", "密码", "Password"),
    ("log_in", "登录", "Log in"),
    ("logout", "退出", "Log out"),
    ("login_failed", "用户名或密码不正确。", "The user name or the password is not right."),
    (
        "login_limited",
        "登录失败次数过多，请15分钟后再试。",
        "Too many failed logins: try again in 15 minutes.",
    ),
    ("dashboard", "工作台", "Dashboard"),
    ("signed_in_as", "当前用户", "Signed in as"),
    ("pending_reviews", "待审核申请", "Applications to review"),
    ("batches_awaiting", "待审批拨付批次", "Batches awaiting approval"),
    ("reviews", "救助审核", "Review queue"),
    ("no_reviews", "目前没有待审核的申请。", "No application is waiting for review."),
    ("application", "申请号", "Application"),
    ("person", "救助对象", "Person"),
    ("bills", "票据数", "Bills"),
    ("findings", "疑点", "Findings"),
    ("in_scope", "政策范围内自付", "In-scope self-pay"),
    ("entered_by", "录入人", "Entered by"),
    ("submitted_at", "提交时间", "Submitted"),
    ("imports", "数据导入", "Imports"),
    ("import_spells", "导入身份认定数据", "Import category spells"),
    (
        "import_help",
        "上传部门提供的身份认定文件（CSV：UTF-8 或 GBK；或 XLSX）。有任何一行错误，整个文件都不导入，并列出每一处错误。",
        "Upload a department's spells file (CSV in UTF-8 or GBK, or XLSX). If any row is wrong, nothing is imported and every problem is listed.",
    ),
    ("source", "数据来源部门", "Reporting department"),
    ("file", "文件", "File"),
    ("upload", "上传并导入", "Upload and import"),
    ("import_result", "导入结果", "Import result"),
    ("refused_whole", "文件未导入，未作任何修改。错误数：", "The file was refused; nothing was changed. Problems:"),
    ("download_report", "下载错误报告（CSV）", "Download the error report (CSV)"),
    ("problems", "错误明细", "Problems"),
    ("line", "行", "Line"),
    ("column", "列", "Column"),
    ("message", "说明", "What is wrong"),
    ("already_imported", "该文件已导入过，未作任何修改：", "This file was imported before; nothing changed:"),
    ("imported", "导入完成。", "Imported."),
    ("rows", "行数", "Rows"),
    ("added", "新增", "Added"),
    ("changed", "变更", "Changed"),
    ("new_recipients", "救助新增", "New recipients"),
    ("ended", "身份终止", "Ended"),
    ("marked", "待重算", "Marked for recomputation"),
    ("import_another", "继续导入", "Import another file"),
    ("invoice_no", "票据号", "Bill number"),
    ("hospital", "医疗机构", "Hospital"),
    ("service_date", "就诊日期", "Service date"),
    ("total", "总金额", "Total"),
    ("status", "状态", "Status"),
    ("amount", "救助金额", "Assistance"),
    ("bill_line", "票据", "Bill"),
    ("no_findings", "智能受理未发现疑点。", "Smart acceptance found nothing."),
    ("verdict", "审核意见", "Verdict"),
    ("reason", "理由（必填）", "Reason (required)"),
    ("approve", "通过", "Approve"),
    ("reject", "不通过", "Reject"),
    ("history", "办理进度", "Progress"),
    ("story", "该对象的全部记录", "The person's whole record"),
    ("batches", "拨付批次", "Payment batches"),
    ("batch", "批次", "Batch"),
    ("lines", "笔数", "Lines"),
    ("made_by", "制单人", "Made by"),
    ("no_batches", "还没有拨付批次。", "No payment batch yet."),
    ("make_batch", "生成拨付批次", "Make a payment batch"),
    (
        "make_batch_help",
        "已核定、尚未拨付且有收款账户的款项，每人一笔，生成一个批次；须由制单人以外的审批员审批。",
        "Everything decided and not yet paid to persons with a bank account goes into one batch, one line per person; an approver other than its maker approves it.",
    ),
    ("nothing_to_pay", "没有可拨付给有收款账户者的款项，未生成批次。", "Nothing is owed to anyone with a bank account: no batch was made."),
    ("approved_by", "审批人", "Approved by"),
    ("batch_lines", "批次明细", "The batch's lines"),
    ("line_pending", "待银行处理", "Pending at the bank"),
    ("line_paid", "已支付", "Paid"),
    ("line_failed", "支付失败", "Failed"),
    ("bank_reason", "银行说明", "The bank's reason"),
    ("export_file", "下载银行支付文件", "Download the bank payment file"),
    ("export_help", "支付文件含完整银行账号，只交给银行。", "The payment file has full account numbers: hand it to the bank only."),
    ("return_file", "银行回盘文件", "The bank's return file"),
    ("upload_return", "上传回盘文件", "Upload the return file"),
    (
        "return_help",
        "CSV 文件，列为 line_id,status,reason；status 为 paid 或 failed，失败须写明原因。任何一行有误，整个文件不予处理。",
        "A CSV file of line_id,status,reason; status is paid or failed, a failed line with the bank's reason. A file with any bad line is refused whole.",
    ),
    ("return_refused", "回盘文件未被接受，未做任何更改。", "The return file is refused: nothing was changed."),
    ("self_approval", "该批次由您制单，须由另一位审批员审批。", "You made this batch: another approver must approve it."),
    ("already_approved", "该批次已审批。", "This batch is approved already."),
    ("not_approved_yet", "该批次尚未审批，不能导出支付文件。", "This batch is not approved yet: its payment file cannot be exported."),
    ("not_exported_yet", "该批次尚未导出支付文件，银行无可回盘。", "This batch has not been exported: there is nothing for the bank to answer."),
    ("awaiting_approval", "待审批", "Awaiting approval"),
    ("approved", "已审批", "Approved"),
    ("exported", "已发送银行", "Sent to the bank"),
    ("returned", "银行已回盘", "Answered by the bank"),
    ("state_needs_review", "待审核", "Waiting for review"),
    ("state_approved", "已通过", "Approved"),
    ("state_rejected", "未通过", "Rejected"),
    ("state_decided", "已核定", "Decided"),
    ("state_paid", "已拨付", "Paid"),
    ("citizen_login", "居民登录", "Resident login"),
    ("resident_id", "身份证号码", "Resident ID number"),
    ("phone", "手机号码", "Mobile phone number"),
    ("get_code", "获取验证码", "Send me a code"),
    (
        "code_sent",
        "如果身份证号码与手机号码相符，验证码已发送到该手机，5分钟内有效。",
        "If the ID number and the phone match, a code was sent to that phone; it is valid for 5 minutes.",
    ),
    ("demo_code", "（演示：验证码为", "(demo: the code is"),
    ("code", "验证码", "Code"),
    ("code_wrong", "验证码不正确或已过期。", "The code is wrong or has expired."),
    ("codes_limited", "验证码请求过多，请15分钟后再试。", "Too many codes asked for: try again in 15 minutes."),
    ("bad_id", "身份证号码不正确，请检查。", "The ID number is not valid: check it."),
    ("oidc_login", "用统一身份认证登录", "Log in with the city's unified login"),
    ("code_login", "或用手机验证码登录", "Or log in with a code sent to your phone"),
    ("oidc_done", "已登录", "Logged in"),
    ("oidc_off", "本站未开通统一身份认证登录，请用手机验证码登录。", "The unified login is not available here: log in with a code sent to your phone."),
    (
        "oidc_expired",
        "统一身份认证登录已过期或未完成，请重新登录。",
        "The unified login expired or did not finish: log in again.",
    ),
    (
        "oidc_cancelled",
        "统一身份认证未完成登录，请重新登录或用手机验证码登录。",
        "The unified login did not log you in: try again, or log in with a code sent to your phone.",
    ),
    (
        "oidc_unavailable",
        "暂时无法连接统一身份认证，请稍后再试或用手机验证码登录。",
        "The unified login cannot be reached now: try again later, or log in with a code sent to your phone.",
    ),
    (
        "oidc_refused",
        "统一身份认证返回的登录凭证未通过校验，未能登录，请重新登录。",
        "The unified login's answer did not pass our checks, so you are not logged in: log in again.",
    ),
    (
        "oidc_no_id",
        "统一身份认证未提供有效的身份证号码，无法登录，请用手机验证码登录。",
        "The unified login gave no valid ID number, so you cannot be logged in: log in with a code sent to your phone.",
    ),
    (
        "oidc_unknown_person",
        "没有查到您的医疗救助记录，无法登录。如有疑问，请联系当地医疗保障部门。",
        "There is no medical assistance record of yours, so you cannot log in. For questions, ask your local medical security office.",
    ),
    ("oidc_limited", "登录次数过多，请15分钟后再试。", "Too many logins: try again in 15 minutes."),
    ("my_bills", "我的救助票据", "My assisted bills"),
    ("no_bills", "目前还没有您的就医票据。", "There is no bill of yours yet."),
    ("reversed", "医院已退费（冲正）", "cancelled by the hospital"),
    ("citizen_entry", "居民服务：查询我的救助", "Residents: see my assistance"),
    ("my_applications", "我的申请进度", "My applications"),
    ("my_payments", "我的救助款", "My payments"),
    ("no_applications", "您还没有提交过救助申请。", "You have not applied yet."),
    ("no_payments", "还没有给您的拨付。", "Nothing has been paid to you yet."),
    ("when", "时间", "When"),
    ("for_what", "款项", "For"),
    ("payment_paid", "已到账", "Paid"),
    ("payment_pending", "银行处理中", "At the bank"),
    ("payment_failed", "银行退回，将重新拨付", "Returned by the bank; to be paid again"),
    ("payment_waiting", "待拨付", "To be paid"),
    ("state_submitted", "已提交", "Submitted"),
    ("state_accepted", "已受理", "Accepted"),
    ("letter", "告知承诺书", "Commitment letter"),
    ("version", "版本", "Version"),
    ("no_letter", "目前没有需要签署的承诺书。", "There is no letter to sign now."),
    ("letter_signed", "您已签署这一版承诺书，可以提交救助申请。", "You signed this version: you can apply."),
    ("sign_letter", "我已阅读，承诺所述属实", "I have read it and I promise"),
    ("my_details", "银行卡和联系方式", "Bank account and contact"),
    ("bank_account", "收款银行账户", "Bank account"),
    ("change_details", "修改", "Change them"),
    (
        "change_help",
        "修改前先获取验证码（发送到您登记的手机）。新的银行账户从下一批拨付起使用。",
        "First get a code (sent to the phone on record). A new bank account is used from the next payment batch.",
    ),
    ("code_sent_phone", "验证码已发送到您登记的手机，5分钟内有效。", "A code was sent to the phone on record; it is valid for 5 minutes."),
    ("holder", "户名", "Account holder"),
    ("bank", "开户银行", "Bank"),
    ("account_number", "银行账号", "Account number"),
    ("new_phone", "新手机号码（不改可不填）", "New mobile number (leave empty to keep it)"),
    ("save_details", "确认修改", "Save the change"),
    ("details_changed", "已修改。", "Changed."),
    ("apply", "申请救助", "Apply"),
    ("sign_first", "申请前请先阅读并签署告知承诺书：", "Before applying, read and sign the commitment letter:"),
    (
        "apply_help",
        "填写医院开具的结算单上的金额（元）。在外地或未联网医院就医、没有自动救助的票据，可以在这里申请。",
        "Copy the amounts (yuan) from the hospital's settlement slip: for a bill of a hospital elsewhere or not connected, not assisted automatically.",
    ),
    ("apply_problems", "请修改以下内容：", "Please correct:"),
    ("visit_type", "就诊类型", "Visit type"),
    ("fund_paid", "医保等基金支付", "Paid by insurance funds"),
    ("out_of_scope", "目录外自费", "Out-of-scope self-pay"),
    ("scan", "票据照片或扫描件（可选，JPEG、PNG 或 PDF）", "Photo or scan of the bill (optional: JPEG, PNG or PDF)"),
    ("submit_application", "提交申请", "Submit"),
    ("bill_pending", "待审核", "to be reviewed"),
    ("bill_decided", "已核定", "decided"),
    ("bill_excluded", "不予受理", "not accepted"),
    ("bill_rejected", "未通过", "turned down"),
    ("scans_again", "已填写的内容已保留；票据照片不会保留，提交前请重新选择。", "What you typed is kept; files are not: choose the scans again before you submit."),
    ("known_title", "医保局已掌握的信息（无需填写）", "What the bureau already knows (nothing to type)"),
    ("id_number", "身份证号", "ID number"),
    ("categories_in_force", "现有救助对象类别", "Category in force"),
    ("no_category_today", "今天没有有效的救助对象类别", "No category in force today"),
    ("change_them_at", "银行账户或手机号码有变化，请到此修改：", "If your bank account or phone changed, change them here:"),
    ("add_bill", "再添加一张发票", "Add another bill"),
    ("bills_limit", "一次申请最多可含的发票张数：", "The most bills one application takes:"),
    ("reapply_title", "可以再次申请的票据", "Bills you may apply for again"),
    (
        "reapply_help",
        "这些票据在您此前未获通过的申请中，至今未获救助。勾选后按医保局存档的信息提交，无需重新填写；可附上新的票据照片。",
        "These bills were in an application that was turned down and were never assisted. Tick one to apply again with the details on record, nothing to retype; you may add a new scan.",
    ),
    ("scan_on_record", "已有票据照片", "scan on record"),
    ("new_scan", "新的票据照片（可选）", "A new scan (optional)"),
    ("unassisted_title", "已结算但未获救助的票据", "Bills settled without assistance"),
    (
        "unassisted_help",
        "以下票据医保局已有记录，无需申请，也不能重复申请：下一次定期清算会按届时的身份认定和政策重新计算，应救助的将自动补发。",
        "The bureau already holds these bills: no application is needed, and none can be made. The next periodic clearing recomputes them with the categories and the policy known then and pays any difference by itself.",
    ),
    ("held_feed", "医保结算数据", "the insurance feed"),
    ("held_realtime", "一站式结算", "real-time settlement"),
    ("held_not_eligible", "就诊当天不在救助对象名单内", "not a recipient on that day"),
    ("held_no_rule", "政策没有适用的规则", "no rule of the policy applied"),
    ("held_duplicate", "重复票据", "a duplicate bill"),
    ("not_held", "不是您可以再次申请的票据，未作任何修改。", "is not one of the bills you may apply for again; nothing was changed."),
    ("no_bill", "请至少填写或勾选一张发票。", "Type or tick at least one bill."),
    ("settled_at", "结算时间", "Settled at"),
    ("scan_short", "票据照片", "Scan"),
    ("bills_all", "发票", "Bills"),
    ("find_person", "查询救助对象", "Find a person"),
    ("purpose", "查询事由（记入审计日志）", "Why (kept in the audit log)"),
    ("open_record", "打开记录", "Open the record"),
    ("read_logged", "本次查询已记入审计日志。", "This read is in the audit log."),
    ("unknown_person", "没有此人的记录。", "There is no record of this person."),
    ("download_xlsx", "导出 Excel", "Export to Excel"),
    ("recipients_by_category", "各类救助对象人数", "Recipients by category"),
    ("assistance_per_month", "每月救助金额", "Assistance per month"),
    ("assistance_per_category", "各类别救助金额", "Assistance per category"),
    ("figures_read_at", "数据统计时间", "Figures as of"),
    ("forbidden", "无权访问", "Not allowed"),
    ("forbidden_text", "您的角色不能使用此页面。", "Your roles do not open this page."),
    ("not_found", "未找到", "Not found"),
    ("bad_form", "表单已过期，请返回重新提交。", "The form has expired: go back and send it again."),    ("policies", "政策版本", "Policy versions"),
    ("policy_refused", "政策文件有误，未作任何修改：", "The policy file is not right; nothing was changed:"),
    ("policy_version", "政策版本号", "Version"),
    ("policy_name", "政策名称", "Name"),
    ("loaded_at", "载入时间", "Loaded at"),
    ("loaded_by", "载入人", "Loaded by"),
    ("in_force", "现行", "In force"),
    ("no_policies", "尚未载入任何政策。", "No policy has been loaded."),
    ("what_if", "政策测算", "What-if"),
    (
        "what_if_help",
        "上传拟定的政策文件（TOML），用本年度已入库的票据测算与现行政策的差额。测算不保存任何数据。",
        "Upload a proposed policy (TOML) to see what it would cost against the policy in force on the year's stored bills. Nothing is stored.",
    ),
    ("what_if_result", "测算结果", "What-if result"),
    ("what_if_nothing_stored", "仅为测算，未保存任何数据。", "A computation only: nothing was stored."),
    ("year", "年度", "Year"),
    ("persons", "人数", "Persons"),
    ("total_now", "现行政策救助金额", "Assisted under the policy in force"),
    ("total_then", "拟定政策救助金额", "Assisted under the proposed policy"),
    ("difference", "差额", "Difference"),
    ("persons_changed", "救助金额变化人数", "Persons whose assistance changes"),
    ("by_category", "按救助对象类别", "By category"),
    ("category", "类别", "Category"),
    ("bills_now", "现行票据数", "Bills now"),
    ("bills_then", "拟定票据数", "Bills then"),
    (
        "spells_left_out",
        "拟定政策未定义其类别、因而不予救助的身份认定期间数：",
        "Spells whose category the proposed policy does not define, granting nothing under it:",
    ),
    ("load_this_policy", "将此政策载入为新版本", "Load this policy as a new version"),
    ("policy_file", "政策文件（TOML）", "Policy file (TOML)"),
    ("compute_what_if", "测算", "Compute"),
    ("load_policy", "载入政策", "Load a policy"),
    (
        "load_policy_help",
        "载入后即成为现行政策，此后的结算和清算均按此执行。",
        "Once loaded it is in force: settlements and clearings from now on use it.",
    ),
    ("policy_loaded", "已载入，新版本号：", "Loaded as version"),
    ("policy_known", "该文件此前已载入，未作修改，版本号：", "This file was loaded before; nothing changed. Version"),
    ("clearings", "定期清算", "Periodic clearings"),
    ("clearing", "清算", "Clearing"),
    ("period", "清算期间", "Period"),
    ("finished_at", "完成时间", "Finished at"),
    ("run_by", "执行人", "Run by"),
    ("top_ups", "补发笔数", "Top-ups"),
    ("top_up_total", "补发金额", "Top-up total"),
    ("recoveries", "追回笔数", "Recoveries"),
    ("recovery_total", "追回金额", "Recovery total"),
    ("no_clearings", "尚未进行过清算。", "No clearing has run."),
    ("run_clearing", "执行清算", "Run a clearing"),
    (
        "run_clearing_help",
        "按月（2024-06）、季度（2024-Q2）或年度（2024）清算：重算该年度的全部票据，补发或追回差额。",
        "For a month (2024-06), a quarter (2024-Q2) or a year (2024): every bill of that year is recomputed and each difference paid or recovered.",
    ),
    ("download_csv", "导出 CSV", "Export to CSV"),
    ("differences", "清算差额", "Differences"),
    ("granted", "已救助", "Granted"),
    ("recomputed", "重算应救助", "Recomputed"),
    ("kind", "类型", "Kind"),
    ("top_up", "补发", "Top-up"),
    ("recovery", "追回", "Recovery"),
    ("no_differences", "本次清算没有差额。", "This clearing found no difference."),
    ("audit_trail", "审计日志", "Audit trail"),
    ("audit_verify", "审计日志完整性校验", "Audit chain check"),
    ("events", "条记录", "events"),
    ("recorded_at", "记录时间", "Recorded at"),
    ("chain_whole", "审计日志完整，未被修改或删除。", "The audit chain is whole: nothing was edited or removed."),
    ("entries", "记录条数", "Entries"),
    ("last_hash", "最后一条的哈希", "Last hash"),
    ("chain_broken", "审计日志已被破坏，第一处问题在第", "The audit chain is broken at entry"),
    ("users", "工作人员", "Staff users"),
    ("api_keys", "接口密钥", "API keys"),
    ("user_added", "已添加工作人员：", "Added:"),
    (
        "token_once",
        "其接口令牌只显示这一次，请妥善转交：",
        "Their API token, shown this once only; hand it over safely:",
    ),
    ("roles", "角色", "Roles"),
    ("created_at", "创建时间", "Created at"),
    ("created_by", "创建人", "Created by"),
    ("disabled", "已停用", "Disabled"),
    ("no_password", "未设密码", "No password"),
    ("active", "有效", "Active"),
    ("add_user", "添加工作人员", "Add a member of staff"),
    ("initial_password", "初始密码", "Initial password"),
    ("password_too_short", "密码太短，至少需要以下字符数：", "The password is too short; the fewest characters:"),
    ("user_exists", "该用户名已存在。", "This user name is taken."),
    ("key_created", "已创建密钥：", "Key created for"),
    ("key_once", "密钥只显示这一次，请妥善转交：", "The key, shown this once only; hand it over safely:"),
    ("key_owner", "使用方类型", "Whose"),
    ("key_id", "密钥编号", "Key"),
    ("key_whose", "医疗机构编码或部门名称", "Hospital code or department name"),
    ("department", "部门", "Department"),
    ("revoked", "已吊销", "Revoked"),
    ("revoke", "吊销", "Revoke"),
    ("no_keys", "尚未创建任何密钥。", "No key has been created."),
    ("create_key", "创建密钥", "Create a key"),
    ("staff_user", "工作人员", "Member of staff"),
    ("manage", "管理", "Manage"),
    ("back_to_users", "返回工作人员列表", "Back to the staff users"),
    ("change_roles", "修改角色", "Change roles"),
    ("save_roles", "保存角色", "Save the roles"),
    ("roles_saved", "角色已保存。", "The roles are saved."),
    ("roles_unchanged", "角色没有变化，未作修改。", "The roles are the same: nothing changed."),
    ("disable_user", "停用", "Disable"),
    (
        "disable_help",
        "停用后，其登录会话立即结束，接口令牌作废，也不能再登录；需要时可重新启用（接口令牌须重新签发）。",
        "Once disabled, their sessions end at once, their API tokens are revoked and they cannot log in; they can be enabled again (with a new API token).",
    ),
    ("disable_reason", "停用原因（必填）", "Why (required)"),
    ("enable_user", "重新启用", "Enable again"),
    ("disabled_since", "停用时间", "Disabled since"),
    ("disabled_by", "停用人", "Disabled by"),
    ("disabled_why", "停用原因", "Reason"),
    ("user_disabled", "已停用。其登录会话已结束，接口令牌已作废。", "Disabled: their sessions have ended and their API tokens are revoked."),
    ("user_enabled", "已重新启用。", "Enabled again."),
    ("no_role", "至少需要选择一个角色。", "Choose at least one role."),
    ("reason_required", "请填写停用原因。", "Say why: a reason is required."),
    ("reason_too_long", "停用原因过长（最多500字）。", "The reason is too long (500 characters at most)."),
    ("self_disable", "不能停用自己的账号。", "You cannot disable yourself."),
    ("self_admin_removal", "不能取消自己的管理员角色。", "You cannot remove your own admin role."),
    (
        "last_admin",
        "这是最后一个有效的管理员，不能停用或取消其管理员角色；请先设置另一位管理员。",
        "This is the last enabled admin: they cannot be disabled nor lose the admin role. Appoint another admin first.",
    ),
    ("already_disabled", "该工作人员已停用。", "This member of staff is disabled already."),
    ("not_disabled", "该工作人员未停用。", "This member of staff is not disabled."),
    ("server_error", "服务暂时出错，请稍后再试。", "Something went wrong on the server; try again later."),
    ("bank_accounts", "银行账户", "Bank accounts"),
    ("upload_accounts", "上传银行账户", "Upload bank accounts"),
    (
        "accounts_help",
        "上传救助对象的银行账户文件（列：person_id,name,bank,account；CSV：UTF-8 或 GBK；或 XLSX）。有任何一行错误，整个文件都不保存，并列出每一处错误。账户自下一拨付批次起使用。",
        "Upload the persons' bank accounts (columns person_id,name,bank,account; CSV in UTF-8 or GBK, or XLSX). If any row is wrong, nothing is stored and every problem is listed. The accounts are used from the next batch.",
    ),
    ("upload_and_store", "上传并保存", "Upload and store"),
    ("accounts_result", "银行账户上传结果", "Bank accounts uploaded"),
    ("accounts_stored", "已保存（新增或变更）", "Stored (new or changed)"),
    ("accounts_unchanged", "未变化", "Unchanged"),
    ("accounts_next_batch", "已保存。自下一拨付批次起使用。", "Stored. They are used from the next batch."),
    ("upload_another", "继续上传", "Upload another file"),
];

/// The language of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Language {
    Chinese,
    English,
}

impl Language {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Language::Chinese => "zh",
            Language::English => "en",
        }
    }

    /// The `lang` attribute of the page.
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Language::Chinese => "zh-CN",
            Language::English => "en",
        }
    }

    pub(crate) fn parse(code: &str) -> Option<Language> {
        match code {
            "zh" => Some(Language::Chinese),
            "en" => Some(Language::English),
            _ => None,
        }
    }

    /// Every text in this language, by key, as the templates read it
    /// (`t.key`): made once, then shared by every page shown.
    pub(crate) fn texts(self) -> minijinja::Value {
        static TEXTS_OF: std::sync::OnceLock<[minijinja::Value; 2]> = std::sync::OnceLock::new();
        let [chinese, english] = TEXTS_OF.get_or_init(|| {
            [Language::Chinese, Language::English].map(|language| {
                let texts: std::collections::BTreeMap<&'static str, &'static str> = TEXTS
                    .iter()
                    .map(|(key, chinese, english)| {
                        (
                            *key,
                            match language {
                                Language::Chinese => *chinese,
                                Language::English => *english,
                            },
                        )
                    })
                    .collect();
                minijinja::Value::from(texts)
            })
        });
        match self {
            Language::Chinese => chinese.clone(),
            Language::English => english.clone(),
        }
    }

    /// One text.
    pub(crate) fn text(self, key: &str) -> &'static str {
        TEXTS
            .iter()
            .find(|(name, _, _)| *name == key)
            .map_or("", |(_, chinese, english)| match self {
                Language::Chinese => chinese,
                Language::English => english,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::TEXTS;

    #[test]
    fn every_key_is_given_once_with_both_languages() {
        let mut keys: Vec<&str> = TEXTS.iter().map(|(key, _, _)| *key).collect();
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), before);
        assert!(TEXTS
            .iter()
            .all(|(_, chinese, english)| !chinese.is_empty() && !english.is_empty()));
    }

    #[test]
    fn every_text_a_template_uses_is_defined() {
        let templates = [
            include_str!("templates/layout.html"),
            include_str!("templates/home.html"),
            include_str!("templates/login.html"),
            include_str!("templates/dashboard.html"),
            include_str!("templates/imports.html"),
            include_str!("templates/import_result.html"),
            include_str!("templates/reviews.html"),
            include_str!("templates/review.html"),
            include_str!("templates/batches.html"),
            include_str!("templates/batch.html"),
            include_str!("templates/citizen_login.html"),
            include_str!("templates/oidc_done.html"),
            include_str!("templates/my_bills.html"),
            include_str!("templates/my_applications.html"),
            include_str!("templates/my_payments.html"),
            include_str!("templates/resident_menu.html"),
            include_str!("templates/my_letter.html"),
            include_str!("templates/my_details.html"),
            include_str!("templates/my_apply.html"),
            include_str!("templates/person.html"),
            include_str!("templates/error.html"),
            include_str!("templates/policies.html"),
            include_str!("templates/clearings.html"),
            include_str!("templates/clearing.html"),
            include_str!("templates/audit.html"),
            include_str!("templates/audit_verify.html"),
            include_str!("templates/users.html"),
            include_str!("templates/keys.html"),
            include_str!("templates/user.html"),
            include_str!("templates/accounts.html"),
        ];
        for template in templates {
            let bytes = template.as_bytes();
            for (at, _) in template.match_indices("t.") {
                let word_before = at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
                if word_before {
                    continue;
                }
                let key: String = template[at + 2..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                assert!(
                    TEXTS.iter().any(|(name, _, _)| *name == key),
                    "t.{key} is not defined"
                );
            }
        }
    }
}
