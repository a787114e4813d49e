-- The simulated hospital's HIS (schema "his"): shaped like a typical Chinese HIS, not like the national
-- catalog. Local codes everywhere (see services/hisbridge/sim/codes.py); national codes come from the value
-- maps in schemas/mapping/valuemaps/. Timestamps are local wall-clock (Asia/Shanghai) timestamp(6) without
-- time zone, money numeric(12,2). Every table has a primary key and REPLICA IDENTITY FULL so Debezium emits
-- full before-images on update/delete. Idempotent: safe to run on an existing schema.

CREATE SCHEMA IF NOT EXISTS his;
COMMENT ON SCHEMA his IS '模拟医院HIS（演示用）';

-- 科室字典 ------------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS his.dept_dict (
    dept_code   varchar(10)  PRIMARY KEY,
    dept_name   varchar(50)  NOT NULL,
    dept_kind   varchar(4)   NOT NULL,            -- OP 门诊, IP 病区, BOTH, EM 急诊
    is_active   char(1)      NOT NULL DEFAULT 'Y',
    updated_at  timestamp(6) NOT NULL
);
COMMENT ON TABLE his.dept_dict IS '科室字典（本院科室代码，经值域映射对应诊疗科目）';
COMMENT ON COLUMN his.dept_dict.dept_code IS '本院科室代码';
COMMENT ON COLUMN his.dept_dict.dept_name IS '科室名称';
COMMENT ON COLUMN his.dept_dict.dept_kind IS '科室类型：OP门诊 IP病区 BOTH门诊及病区 EM急诊';
COMMENT ON COLUMN his.dept_dict.is_active IS '是否启用 Y/N';
COMMENT ON COLUMN his.dept_dict.updated_at IS '最后修改时间';

-- 人员字典 ------------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS his.staff_dict (
    staff_code  varchar(10)  PRIMARY KEY,
    staff_name  varchar(40)  NOT NULL,
    dept_code   varchar(10)  NOT NULL,
    title_code  varchar(4)   NOT NULL,            -- ZR FZR ZZ ZYS HS
    staff_kind  varchar(4)   NOT NULL,            -- DOC 医生, NUR 护士, COD 编码员
    updated_at  timestamp(6) NOT NULL
);
COMMENT ON TABLE his.staff_dict IS '人员字典';
COMMENT ON COLUMN his.staff_dict.staff_code IS '工号';
COMMENT ON COLUMN his.staff_dict.staff_name IS '姓名';
COMMENT ON COLUMN his.staff_dict.dept_code IS '所属科室代码';
COMMENT ON COLUMN his.staff_dict.title_code IS '职称：ZR主任医师 FZR副主任医师 ZZ主治医师 ZYS住院医师 HS护士';
COMMENT ON COLUMN his.staff_dict.staff_kind IS '人员类别：DOC医生 NUR护士 COD编码员';
COMMENT ON COLUMN his.staff_dict.updated_at IS '最后修改时间';

-- 患者主索引 ----------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS his.pat_master (
    patient_id        varchar(20)  PRIMARY KEY,
    name              varchar(40),
    sex               char(1),                    -- M F U
    birth_date        date,
    id_type           varchar(8),
    id_no             varchar(32),
    nationality       varchar(8)   DEFAULT 'CHN',
    nation            varchar(8),
    marital           varchar(4),
    occupation        varchar(8),
    phone             varchar(20),
    address           varchar(200),
    hukou_address     varchar(200),
    postcode          varchar(6),
    birth_place       varchar(200),
    native_place      varchar(50),
    work_unit         varchar(100),
    work_phone        varchar(20),
    contact_name      varchar(40),
    contact_relation  varchar(4),
    contact_phone     varchar(20),
    contact_address   varchar(200),
    health_card_no    varchar(50),
    created_at        timestamp(6) NOT NULL,
    updated_at        timestamp(6) NOT NULL
);
COMMENT ON TABLE his.pat_master IS '患者主索引';
COMMENT ON COLUMN his.pat_master.patient_id IS '患者ID（本院）';
COMMENT ON COLUMN his.pat_master.name IS '姓名';
COMMENT ON COLUMN his.pat_master.sex IS '性别：M男 F女 U未知';
COMMENT ON COLUMN his.pat_master.birth_date IS '出生日期';
COMMENT ON COLUMN his.pat_master.id_type IS '证件类型（本院代码）';
COMMENT ON COLUMN his.pat_master.id_no IS '证件号码';
COMMENT ON COLUMN his.pat_master.nationality IS '国籍';
COMMENT ON COLUMN his.pat_master.nation IS '民族（本院代码）';
COMMENT ON COLUMN his.pat_master.marital IS '婚姻状况（本院代码）';
COMMENT ON COLUMN his.pat_master.occupation IS '职业（本院代码）';
COMMENT ON COLUMN his.pat_master.phone IS '联系电话';
COMMENT ON COLUMN his.pat_master.address IS '现住址';
COMMENT ON COLUMN his.pat_master.hukou_address IS '户口地址';
COMMENT ON COLUMN his.pat_master.postcode IS '现住址邮编';
COMMENT ON COLUMN his.pat_master.birth_place IS '出生地';
COMMENT ON COLUMN his.pat_master.native_place IS '籍贯';
COMMENT ON COLUMN his.pat_master.work_unit IS '工作单位及地址';
COMMENT ON COLUMN his.pat_master.work_phone IS '单位电话';
COMMENT ON COLUMN his.pat_master.contact_name IS '联系人姓名';
COMMENT ON COLUMN his.pat_master.contact_relation IS '联系人关系（本院代码）';
COMMENT ON COLUMN his.pat_master.contact_phone IS '联系人电话';
COMMENT ON COLUMN his.pat_master.contact_address IS '联系人地址';
COMMENT ON COLUMN his.pat_master.health_card_no IS '健康卡号';
COMMENT ON COLUMN his.pat_master.created_at IS '建档时间';
COMMENT ON COLUMN his.pat_master.updated_at IS '最后修改时间';

-- 门急诊挂号 ----------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS his.op_register (
    reg_id       varchar(20)   PRIMARY KEY,
    patient_id   varchar(20)   NOT NULL,
    dept_code    varchar(10),
    doctor_code  varchar(10),
    visit_type   varchar(4)    NOT NULL,          -- PT 普通门诊, ZJ 专家门诊, JZ 急诊
    reg_time     timestamp(6)  NOT NULL,
    fee_type     varchar(8),
    reg_fee      numeric(12,2) NOT NULL DEFAULT 0,
    status       char(1)       NOT NULL,          -- R 已挂号, V 已就诊, C 退号
    cancel_time  timestamp(6),
    updated_at   timestamp(6)  NOT NULL
);
COMMENT ON TABLE his.op_register IS '门急诊挂号';
COMMENT ON COLUMN his.op_register.reg_id IS '挂号流水号';
COMMENT ON COLUMN his.op_register.patient_id IS '患者ID';
COMMENT ON COLUMN his.op_register.dept_code IS '挂号科室代码';
COMMENT ON COLUMN his.op_register.doctor_code IS '挂号医生工号';
COMMENT ON COLUMN his.op_register.visit_type IS '就诊类型：PT普通门诊 ZJ专家门诊 JZ急诊';
COMMENT ON COLUMN his.op_register.reg_time IS '挂号时间';
COMMENT ON COLUMN his.op_register.fee_type IS '费别（本院医疗付费方式代码）';
COMMENT ON COLUMN his.op_register.reg_fee IS '挂号费';
COMMENT ON COLUMN his.op_register.status IS '状态：R已挂号 V已就诊 C退号';
COMMENT ON COLUMN his.op_register.cancel_time IS '退号时间';
COMMENT ON COLUMN his.op_register.updated_at IS '最后修改时间';

-- 门急诊就诊记录 ------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS his.op_visit (
    visit_id         varchar(20)   PRIMARY KEY,
    reg_id           varchar(20)   NOT NULL,
    patient_id       varchar(20)   NOT NULL,
    dept_code        varchar(10),
    doctor_code      varchar(10),
    visit_time       timestamp(6)  NOT NULL,
    first_visit      char(1)       NOT NULL,      -- Y 初诊, N 复诊
    chief_complaint  varchar(500),
    total_fee        numeric(12,2) NOT NULL DEFAULT 0,
    updated_at       timestamp(6)  NOT NULL
);
COMMENT ON TABLE his.op_visit IS '门急诊就诊记录';
COMMENT ON COLUMN his.op_visit.visit_id IS '就诊流水号';
COMMENT ON COLUMN his.op_visit.reg_id IS '挂号流水号';
COMMENT ON COLUMN his.op_visit.patient_id IS '患者ID';
COMMENT ON COLUMN his.op_visit.dept_code IS '就诊科室代码';
COMMENT ON COLUMN his.op_visit.doctor_code IS '接诊医生工号';
COMMENT ON COLUMN his.op_visit.visit_time IS '就诊时间';
COMMENT ON COLUMN his.op_visit.first_visit IS '初诊标志：Y初诊 N复诊';
COMMENT ON COLUMN his.op_visit.chief_complaint IS '主诉';
COMMENT ON COLUMN his.op_visit.total_fee IS '本次就诊总费用';
COMMENT ON COLUMN his.op_visit.updated_at IS '最后修改时间';

-- 门急诊诊断 ----------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS his.op_diagnosis (
    visit_id     varchar(20)  NOT NULL,
    seq          smallint     NOT NULL,
    diag_type    char(1)      NOT NULL,           -- 1 主诊断, 2 其他诊断
    icd_code     varchar(20),
    icd_name     varchar(100),
    diag_time    timestamp(6) NOT NULL,
    doctor_code  varchar(10),
    updated_at   timestamp(6) NOT NULL,
    PRIMARY KEY (visit_id, seq)
);
COMMENT ON TABLE his.op_diagnosis IS '门急诊诊断';
COMMENT ON COLUMN his.op_diagnosis.visit_id IS '就诊流水号';
COMMENT ON COLUMN his.op_diagnosis.seq IS '诊断序号';
COMMENT ON COLUMN his.op_diagnosis.diag_type IS '诊断类型：1主诊断 2其他诊断';
COMMENT ON COLUMN his.op_diagnosis.icd_code IS '诊断编码（ICD-10国家临床版2.0）';
COMMENT ON COLUMN his.op_diagnosis.icd_name IS '诊断名称';
COMMENT ON COLUMN his.op_diagnosis.diag_time IS '诊断时间';
COMMENT ON COLUMN his.op_diagnosis.doctor_code IS '诊断医生工号';
COMMENT ON COLUMN his.op_diagnosis.updated_at IS '最后修改时间';

-- 住院登记（入出院） ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS his.ip_admission (
    inpatient_no     varchar(20)  PRIMARY KEY,
    patient_id       varchar(20)  NOT NULL,
    mr_no            varchar(20)  NOT NULL,
    admit_times      smallint     NOT NULL,
    admit_time       timestamp(6) NOT NULL,
    admit_dept       varchar(10),
    admit_ward       varchar(30),
    bed_no           varchar(10),
    admit_route      varchar(4),
    op_diag_code     varchar(20),
    op_diag_name     varchar(100),
    attending_code   varchar(10),
    fee_type         varchar(8),
    discharge_time   timestamp(6),
    discharge_dept   varchar(10),
    discharge_ward   varchar(30),
    discharge_mode   varchar(4),
    status           char(1)      NOT NULL,       -- I 在院, O 出院
    updated_at       timestamp(6) NOT NULL
);
COMMENT ON TABLE his.ip_admission IS '住院登记（入出院）';
COMMENT ON COLUMN his.ip_admission.inpatient_no IS '住院号（本次住院流水）';
COMMENT ON COLUMN his.ip_admission.patient_id IS '患者ID';
COMMENT ON COLUMN his.ip_admission.mr_no IS '病案号';
COMMENT ON COLUMN his.ip_admission.admit_times IS '住院次数';
COMMENT ON COLUMN his.ip_admission.admit_time IS '入院时间';
COMMENT ON COLUMN his.ip_admission.admit_dept IS '入院科室代码';
COMMENT ON COLUMN his.ip_admission.admit_ward IS '入院病区';
COMMENT ON COLUMN his.ip_admission.bed_no IS '床号';
COMMENT ON COLUMN his.ip_admission.admit_route IS '入院途径（本院代码）';
COMMENT ON COLUMN his.ip_admission.op_diag_code IS '门急诊诊断编码';
COMMENT ON COLUMN his.ip_admission.op_diag_name IS '门急诊诊断名称';
COMMENT ON COLUMN his.ip_admission.attending_code IS '主治医生工号';
COMMENT ON COLUMN his.ip_admission.fee_type IS '费别（本院医疗付费方式代码）';
COMMENT ON COLUMN his.ip_admission.discharge_time IS '出院时间';
COMMENT ON COLUMN his.ip_admission.discharge_dept IS '出院科室代码';
COMMENT ON COLUMN his.ip_admission.discharge_ward IS '出院病区';
COMMENT ON COLUMN his.ip_admission.discharge_mode IS '离院方式（本院代码）';
COMMENT ON COLUMN his.ip_admission.status IS '状态：I在院 O出院';
COMMENT ON COLUMN his.ip_admission.updated_at IS '最后修改时间';

-- 住院病案首页 --------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS his.mr_homepage (
    inpatient_no          varchar(20)   PRIMARY KEY,
    patient_id            varchar(20)   NOT NULL,
    mr_no                 varchar(20)   NOT NULL,
    admit_times           smallint      NOT NULL,
    pay_code              varchar(8),
    age_years             smallint,
    age_days              smallint,
    newborn_birth_weight  smallint,
    newborn_admit_weight  smallint,
    admit_time            timestamp(6)  NOT NULL,
    admit_dept            varchar(10),
    admit_ward            varchar(30),
    transfer_dept         varchar(30),
    admit_route           varchar(4),
    discharge_time        timestamp(6)  NOT NULL,
    discharge_dept        varchar(10),
    discharge_ward        varchar(30),
    los_days              smallint      NOT NULL,
    drug_allergy          char(1),
    allergy_drugs         varchar(200),
    autopsy               char(1),
    abo                   varchar(4),
    rh                    varchar(4),
    director_code         varchar(10),
    chief_code            varchar(10),
    attending_code        varchar(10),
    resident_code         varchar(10),
    nurse_code            varchar(10),
    coder_code            varchar(10),
    quality               char(1),
    qc_date               date,
    discharge_mode        varchar(4),
    transfer_org          varchar(100),
    readmit_plan          char(1),
    readmit_purpose       varchar(200),
    path_diag_name        varchar(100),
    path_diag_code        varchar(20),
    path_no               varchar(50),
    ext_cause_name        varchar(100),
    ext_cause_code        varchar(20),
    total_fee             numeric(12,2) NOT NULL,
    self_pay              numeric(12,2) NOT NULL,
    fee_general_service   numeric(12,2) NOT NULL DEFAULT 0,
    fee_general_treatment numeric(12,2) NOT NULL DEFAULT 0,
    fee_nursing           numeric(12,2) NOT NULL DEFAULT 0,
    fee_other_service     numeric(12,2) NOT NULL DEFAULT 0,
    fee_pathology         numeric(12,2) NOT NULL DEFAULT 0,
    fee_lab               numeric(12,2) NOT NULL DEFAULT 0,
    fee_imaging           numeric(12,2) NOT NULL DEFAULT 0,
    fee_clinical_diag     numeric(12,2) NOT NULL DEFAULT 0,
    fee_nonsurgical       numeric(12,2) NOT NULL DEFAULT 0,
    fee_physio            numeric(12,2) NOT NULL DEFAULT 0,
    fee_surgical          numeric(12,2) NOT NULL DEFAULT 0,
    fee_anesthesia        numeric(12,2) NOT NULL DEFAULT 0,
    fee_operation         numeric(12,2) NOT NULL DEFAULT 0,
    fee_rehab             numeric(12,2) NOT NULL DEFAULT 0,
    fee_tcm_treatment     numeric(12,2) NOT NULL DEFAULT 0,
    fee_western_drug      numeric(12,2) NOT NULL DEFAULT 0,
    fee_antibiotics       numeric(12,2) NOT NULL DEFAULT 0,
    fee_chinese_patent    numeric(12,2) NOT NULL DEFAULT 0,
    fee_chinese_herbal    numeric(12,2) NOT NULL DEFAULT 0,
    fee_blood             numeric(12,2) NOT NULL DEFAULT 0,
    fee_albumin           numeric(12,2) NOT NULL DEFAULT 0,
    fee_globulin          numeric(12,2) NOT NULL DEFAULT 0,
    fee_coag_factor       numeric(12,2) NOT NULL DEFAULT 0,
    fee_cytokine          numeric(12,2) NOT NULL DEFAULT 0,
    fee_mat_exam          numeric(12,2) NOT NULL DEFAULT 0,
    fee_mat_treatment     numeric(12,2) NOT NULL DEFAULT 0,
    fee_mat_operation     numeric(12,2) NOT NULL DEFAULT 0,
    fee_other             numeric(12,2) NOT NULL DEFAULT 0,
    archive_time          timestamp(6),
    updated_at            timestamp(6)  NOT NULL
);
-- Columns added after the first release: a schema created by an older version gains them here, before
-- the comments below name them.
ALTER TABLE his.mr_homepage    ADD COLUMN IF NOT EXISTS path_diag_name varchar(100);
ALTER TABLE his.mr_homepage    ADD COLUMN IF NOT EXISTS path_diag_code varchar(20);
ALTER TABLE his.mr_homepage    ADD COLUMN IF NOT EXISTS path_no        varchar(50);
ALTER TABLE his.mr_homepage    ADD COLUMN IF NOT EXISTS ext_cause_name varchar(100);
ALTER TABLE his.mr_homepage    ADD COLUMN IF NOT EXISTS ext_cause_code varchar(20);

COMMENT ON TABLE his.mr_homepage IS '住院病案首页（患者身份信息见患者主索引）';
COMMENT ON COLUMN his.mr_homepage.inpatient_no IS '住院号';
COMMENT ON COLUMN his.mr_homepage.patient_id IS '患者ID';
COMMENT ON COLUMN his.mr_homepage.mr_no IS '病案号';
COMMENT ON COLUMN his.mr_homepage.admit_times IS '住院次数';
COMMENT ON COLUMN his.mr_homepage.pay_code IS '医疗付费方式（本院代码）';
COMMENT ON COLUMN his.mr_homepage.age_years IS '年龄（岁）';
COMMENT ON COLUMN his.mr_homepage.age_days IS '不足1周岁年龄（天）';
COMMENT ON COLUMN his.mr_homepage.newborn_birth_weight IS '新生儿出生体重（克）';
COMMENT ON COLUMN his.mr_homepage.newborn_admit_weight IS '新生儿入院体重（克）';
COMMENT ON COLUMN his.mr_homepage.admit_time IS '入院时间';
COMMENT ON COLUMN his.mr_homepage.admit_dept IS '入院科别（本院科室代码）';
COMMENT ON COLUMN his.mr_homepage.admit_ward IS '入院病房';
COMMENT ON COLUMN his.mr_homepage.transfer_dept IS '转科科别';
COMMENT ON COLUMN his.mr_homepage.admit_route IS '入院途径（本院代码）';
COMMENT ON COLUMN his.mr_homepage.discharge_time IS '出院时间';
COMMENT ON COLUMN his.mr_homepage.discharge_dept IS '出院科别（本院科室代码）';
COMMENT ON COLUMN his.mr_homepage.discharge_ward IS '出院病房';
COMMENT ON COLUMN his.mr_homepage.los_days IS '实际住院天数';
COMMENT ON COLUMN his.mr_homepage.drug_allergy IS '药物过敏：1无 2有';
COMMENT ON COLUMN his.mr_homepage.allergy_drugs IS '过敏药物';
COMMENT ON COLUMN his.mr_homepage.autopsy IS '死亡患者尸检：1是 2否';
COMMENT ON COLUMN his.mr_homepage.abo IS 'ABO血型（本院代码）';
COMMENT ON COLUMN his.mr_homepage.rh IS 'Rh血型（本院代码）';
COMMENT ON COLUMN his.mr_homepage.director_code IS '科主任工号';
COMMENT ON COLUMN his.mr_homepage.chief_code IS '主任（副主任）医师工号';
COMMENT ON COLUMN his.mr_homepage.attending_code IS '主治医师工号';
COMMENT ON COLUMN his.mr_homepage.resident_code IS '住院医师工号';
COMMENT ON COLUMN his.mr_homepage.nurse_code IS '责任护士工号';
COMMENT ON COLUMN his.mr_homepage.coder_code IS '编码员工号';
COMMENT ON COLUMN his.mr_homepage.quality IS '病案质量：1甲 2乙 3丙';
COMMENT ON COLUMN his.mr_homepage.qc_date IS '质控日期';
COMMENT ON COLUMN his.mr_homepage.discharge_mode IS '离院方式（本院代码）';
COMMENT ON COLUMN his.mr_homepage.transfer_org IS '拟接收医疗机构名称';
COMMENT ON COLUMN his.mr_homepage.readmit_plan IS '出院31天内再住院计划：1无 2有';
COMMENT ON COLUMN his.mr_homepage.readmit_purpose IS '再住院目的';
COMMENT ON COLUMN his.mr_homepage.path_diag_name IS '病理诊断名称（主要诊断为肿瘤C00–D48时填写）';
COMMENT ON COLUMN his.mr_homepage.path_diag_code IS '病理诊断编码（ICD-O-3形态学M码，如M81400/3）';
COMMENT ON COLUMN his.mr_homepage.path_no IS '病理号';
COMMENT ON COLUMN his.mr_homepage.ext_cause_name IS '损伤、中毒的外部原因（主要诊断为S/T时填写）';
COMMENT ON COLUMN his.mr_homepage.ext_cause_code IS '损伤、中毒外部原因编码（ICD-10 V01–Y98）';
COMMENT ON COLUMN his.mr_homepage.total_fee IS '住院总费用';
COMMENT ON COLUMN his.mr_homepage.self_pay IS '自付金额';
COMMENT ON COLUMN his.mr_homepage.fee_general_service IS '综合医疗服务类：一般医疗服务费';
COMMENT ON COLUMN his.mr_homepage.fee_general_treatment IS '综合医疗服务类：一般治疗操作费';
COMMENT ON COLUMN his.mr_homepage.fee_nursing IS '综合医疗服务类：护理费';
COMMENT ON COLUMN his.mr_homepage.fee_other_service IS '综合医疗服务类：其他费用';
COMMENT ON COLUMN his.mr_homepage.fee_pathology IS '诊断类：病理诊断费';
COMMENT ON COLUMN his.mr_homepage.fee_lab IS '诊断类：实验室诊断费';
COMMENT ON COLUMN his.mr_homepage.fee_imaging IS '诊断类：影像学诊断费';
COMMENT ON COLUMN his.mr_homepage.fee_clinical_diag IS '诊断类：临床诊断项目费';
COMMENT ON COLUMN his.mr_homepage.fee_nonsurgical IS '治疗类：非手术治疗项目费';
COMMENT ON COLUMN his.mr_homepage.fee_physio IS '治疗类：其中临床物理治疗费';
COMMENT ON COLUMN his.mr_homepage.fee_surgical IS '治疗类：手术治疗费';
COMMENT ON COLUMN his.mr_homepage.fee_anesthesia IS '治疗类：其中麻醉费';
COMMENT ON COLUMN his.mr_homepage.fee_operation IS '治疗类：其中手术费';
COMMENT ON COLUMN his.mr_homepage.fee_rehab IS '康复类：康复费';
COMMENT ON COLUMN his.mr_homepage.fee_tcm_treatment IS '中医类：中医治疗费';
COMMENT ON COLUMN his.mr_homepage.fee_western_drug IS '西药类：西药费';
COMMENT ON COLUMN his.mr_homepage.fee_antibiotics IS '西药类：其中抗菌药物费用';
COMMENT ON COLUMN his.mr_homepage.fee_chinese_patent IS '中药类：中成药费';
COMMENT ON COLUMN his.mr_homepage.fee_chinese_herbal IS '中药类：中草药费';
COMMENT ON COLUMN his.mr_homepage.fee_blood IS '血液和血液制品类：血费';
COMMENT ON COLUMN his.mr_homepage.fee_albumin IS '血液和血液制品类：白蛋白类制品费';
COMMENT ON COLUMN his.mr_homepage.fee_globulin IS '血液和血液制品类：球蛋白类制品费';
COMMENT ON COLUMN his.mr_homepage.fee_coag_factor IS '血液和血液制品类：凝血因子类制品费';
COMMENT ON COLUMN his.mr_homepage.fee_cytokine IS '血液和血液制品类：细胞因子类制品费';
COMMENT ON COLUMN his.mr_homepage.fee_mat_exam IS '耗材类：检查用一次性医用材料费';
COMMENT ON COLUMN his.mr_homepage.fee_mat_treatment IS '耗材类：治疗用一次性医用材料费';
COMMENT ON COLUMN his.mr_homepage.fee_mat_operation IS '耗材类：手术用一次性医用材料费';
COMMENT ON COLUMN his.mr_homepage.fee_other IS '其他类：其他费';
COMMENT ON COLUMN his.mr_homepage.archive_time IS '病案归档时间（首页及附属表的报送批次时间）';
COMMENT ON COLUMN his.mr_homepage.updated_at IS '最后修改时间';

-- 病案首页诊断 --------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS his.mr_diagnosis (
    inpatient_no     varchar(20)  NOT NULL,
    seq              smallint     NOT NULL,
    diag_type        char(1)      NOT NULL,       -- M 门急诊诊断, Z 主要诊断, Q 其他诊断
    icd_code         varchar(20),
    icd_name         varchar(100),
    admit_condition  varchar(4),
    updated_at       timestamp(6) NOT NULL,
    PRIMARY KEY (inpatient_no, seq)
);
COMMENT ON TABLE his.mr_diagnosis IS '病案首页诊断';
COMMENT ON COLUMN his.mr_diagnosis.inpatient_no IS '住院号';
COMMENT ON COLUMN his.mr_diagnosis.seq IS '诊断序号（0为主要诊断）';
COMMENT ON COLUMN his.mr_diagnosis.diag_type IS '诊断类别：Z主要诊断 Q其他诊断';
COMMENT ON COLUMN his.mr_diagnosis.icd_code IS '疾病编码（ICD-10国家临床版2.0）';
COMMENT ON COLUMN his.mr_diagnosis.icd_name IS '疾病名称';
COMMENT ON COLUMN his.mr_diagnosis.admit_condition IS '入院病情（本院代码）';
COMMENT ON COLUMN his.mr_diagnosis.updated_at IS '最后修改时间';

-- 病案首页手术操作 ----------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS his.mr_operation (
    inpatient_no      varchar(20)  NOT NULL,
    seq               smallint     NOT NULL,
    op_code           varchar(20),
    op_name           varchar(100),
    op_time           timestamp(6),
    op_level          char(1),
    surgeon_code      varchar(10),
    assistant1_code   varchar(10),
    assistant2_code   varchar(10),
    incision_class    char(1),
    healing_class     char(1),
    anesthesia_code   varchar(4),
    anesthetist_code  varchar(10),
    updated_at        timestamp(6) NOT NULL,
    PRIMARY KEY (inpatient_no, seq)
);
COMMENT ON TABLE his.mr_operation IS '病案首页手术操作';
COMMENT ON COLUMN his.mr_operation.inpatient_no IS '住院号';
COMMENT ON COLUMN his.mr_operation.seq IS '手术序号（0为主要手术）';
COMMENT ON COLUMN his.mr_operation.op_code IS '手术操作编码（ICD-9-CM-3国家临床版3.0）';
COMMENT ON COLUMN his.mr_operation.op_name IS '手术操作名称';
COMMENT ON COLUMN his.mr_operation.op_time IS '手术操作日期时间';
COMMENT ON COLUMN his.mr_operation.op_level IS '手术级别 1-4';
COMMENT ON COLUMN his.mr_operation.surgeon_code IS '术者工号';
COMMENT ON COLUMN his.mr_operation.assistant1_code IS 'Ⅰ助工号';
COMMENT ON COLUMN his.mr_operation.assistant2_code IS 'Ⅱ助工号';
COMMENT ON COLUMN his.mr_operation.incision_class IS '切口等级：0 1 2 3（0类 Ⅰ Ⅱ Ⅲ）';
COMMENT ON COLUMN his.mr_operation.healing_class IS '切口愈合类别：J甲 Y乙 B丙 Q其他';
COMMENT ON COLUMN his.mr_operation.anesthesia_code IS '麻醉方式（本院代码）：QM全麻 ZG椎管内 JM局麻 SJ神经阻滞';
COMMENT ON COLUMN his.mr_operation.anesthetist_code IS '麻醉医师工号';
COMMENT ON COLUMN his.mr_operation.updated_at IS '最后修改时间';

-- 中医病案首页附页 ----------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS his.mr_homepage_tcm (
    inpatient_no        varchar(20)   PRIMARY KEY,
    treat_category      varchar(4),               -- 1.1 中医, 1.2 民族医, 2 中西医, 3 西医
    op_tcm_diag_code    varchar(20),
    op_tcm_diag_name    varchar(100),
    clinical_pathway    char(1),                  -- 1 中医, 2 西医, 3 否
    use_tcm_prep        char(1),                  -- 1 是, 2 否
    use_tcm_device      char(1),
    use_tcm_tech        char(1),
    syndrome_nursing    char(1),
    main_disease_code   varchar(20),
    main_disease_name   varchar(100),
    main_disease_cond   varchar(4),
    main_syndrome_code  varchar(20),
    main_syndrome_name  varchar(100),
    main_syndrome_cond  varchar(4),
    fee_tcm_prep        numeric(12,2) NOT NULL DEFAULT 0,
    updated_at          timestamp(6)  NOT NULL
);
COMMENT ON TABLE his.mr_homepage_tcm IS '中医住院病案首页附页（与住院病案首页同一住院号）';
COMMENT ON COLUMN his.mr_homepage_tcm.inpatient_no IS '住院号';
COMMENT ON COLUMN his.mr_homepage_tcm.treat_category IS '治疗类别：1.1中医 1.2民族医 2中西医 3西医';
COMMENT ON COLUMN his.mr_homepage_tcm.op_tcm_diag_code IS '门急诊中医诊断编码';
COMMENT ON COLUMN his.mr_homepage_tcm.op_tcm_diag_name IS '门急诊中医诊断名称';
COMMENT ON COLUMN his.mr_homepage_tcm.clinical_pathway IS '实施临床路径：1中医 2西医 3否';
COMMENT ON COLUMN his.mr_homepage_tcm.use_tcm_prep IS '使用医疗机构中药制剂：1是 2否';
COMMENT ON COLUMN his.mr_homepage_tcm.use_tcm_device IS '使用中医诊疗设备：1是 2否';
COMMENT ON COLUMN his.mr_homepage_tcm.use_tcm_tech IS '使用中医诊疗技术：1是 2否';
COMMENT ON COLUMN his.mr_homepage_tcm.syndrome_nursing IS '辨证施护：1是 2否';
COMMENT ON COLUMN his.mr_homepage_tcm.main_disease_code IS '中医主病编码';
COMMENT ON COLUMN his.mr_homepage_tcm.main_disease_name IS '中医主病名称';
COMMENT ON COLUMN his.mr_homepage_tcm.main_disease_cond IS '主病入院病情（本院代码）';
COMMENT ON COLUMN his.mr_homepage_tcm.main_syndrome_code IS '中医主证编码';
COMMENT ON COLUMN his.mr_homepage_tcm.main_syndrome_name IS '中医主证名称';
COMMENT ON COLUMN his.mr_homepage_tcm.main_syndrome_cond IS '主证入院病情（本院代码）';
COMMENT ON COLUMN his.mr_homepage_tcm.fee_tcm_prep IS '医疗机构中药制剂费';
COMMENT ON COLUMN his.mr_homepage_tcm.updated_at IS '最后修改时间';

-- 评审指标 ------------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS his.eval_indicator (
    period          varchar(7)    NOT NULL,       -- YYYY-MM (月度) 或 YYYY (年度)
    indicator_code  varchar(20)   NOT NULL,       -- 三级医院评审标准 2022 编号, e.g. 2.1.1.1
    indicator_name  varchar(100)  NOT NULL,
    specialty_code  varchar(10),                  -- 重点专业（专业质控指标），全院指标为空
    specialty_name  varchar(50),
    value           numeric(18,4),
    numerator       numeric(18,4),                -- 分子、分母：比率指标的计算口径，计数指标为空
    denominator     numeric(18,4),
    unit            varchar(10),
    updated_at      timestamp(6)  NOT NULL,
    PRIMARY KEY (period, indicator_code)
);
ALTER TABLE his.eval_indicator ADD COLUMN IF NOT EXISTS specialty_code varchar(10);
ALTER TABLE his.eval_indicator ADD COLUMN IF NOT EXISTS specialty_name varchar(50);
ALTER TABLE his.eval_indicator ADD COLUMN IF NOT EXISTS numerator numeric(18,4);
ALTER TABLE his.eval_indicator ADD COLUMN IF NOT EXISTS denominator numeric(18,4);

COMMENT ON TABLE his.eval_indicator IS '三级医院评审指标（月度：全院及重点专业；年度：资源配置）';
COMMENT ON COLUMN his.eval_indicator.period IS '统计期：YYYY-MM月度 YYYY年度';
COMMENT ON COLUMN his.eval_indicator.indicator_code IS '指标编号（三级医院评审标准2022）';
COMMENT ON COLUMN his.eval_indicator.indicator_name IS '指标名称';
COMMENT ON COLUMN his.eval_indicator.specialty_code IS '重点专业代码（MZ麻醉 ZZ重症 JZ急诊 GR院感 YY用药 HL护理），全院指标为空';
COMMENT ON COLUMN his.eval_indicator.specialty_name IS '重点专业名称';
COMMENT ON COLUMN his.eval_indicator.value IS '指标值';
COMMENT ON COLUMN his.eval_indicator.numerator IS '分子（比率指标；计数指标为空）';
COMMENT ON COLUMN his.eval_indicator.denominator IS '分母（比率指标；计数指标为空）';
COMMENT ON COLUMN his.eval_indicator.unit IS '单位';
COMMENT ON COLUMN his.eval_indicator.updated_at IS '最后修改时间';

ALTER TABLE his.dept_dict       REPLICA IDENTITY FULL;
ALTER TABLE his.staff_dict      REPLICA IDENTITY FULL;
ALTER TABLE his.pat_master      REPLICA IDENTITY FULL;
ALTER TABLE his.op_register     REPLICA IDENTITY FULL;
ALTER TABLE his.op_visit        REPLICA IDENTITY FULL;
ALTER TABLE his.op_diagnosis    REPLICA IDENTITY FULL;
ALTER TABLE his.ip_admission    REPLICA IDENTITY FULL;
ALTER TABLE his.mr_homepage     REPLICA IDENTITY FULL;
ALTER TABLE his.mr_diagnosis    REPLICA IDENTITY FULL;
ALTER TABLE his.mr_operation    REPLICA IDENTITY FULL;
ALTER TABLE his.mr_homepage_tcm REPLICA IDENTITY FULL;
ALTER TABLE his.eval_indicator  REPLICA IDENTITY FULL;
