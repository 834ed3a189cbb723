"""Sample county exports for the import tests (and the workbench screenshots): the 互联网+监管 名录库
layout, 12345 工单 and inspection results, written as real .xlsx files with openpyxl or as CSV."""

from __future__ import annotations

import csv
from pathlib import Path

from openpyxl import Workbook
from stdnum.cn import uscc


def code(base: str) -> str:
    """A 统一社会信用代码 with its right check digit."""
    return base + uscc.calc_check_digit(base)


FOOD = code("91411121MA4000000")
DINER = code("92411121MA4000002")
PHARMACY = code("91411121MA4000003")
REGISTRY_HEADERS = [
    "主体名称",
    "统一社会信用代码",
    "许可证编号",
    "主体类型",
    "所属乡镇",
    "经营地址",
    "经度",
    "纬度",
    "登记状态",
    "更新时间",
]
REGISTRY_ROWS: list[list[object]] = [
    ["舞阳县某某食品有限公司", FOOD, "SC11041112100001", "食品生产企业", "舞泉镇", "舞泉镇人民路1号", 113.61, 33.44,
     "存续", "2026-11-01 09:00"],
    ["舞阳县老王饭店(个体)", DINER, "JY24111210000002", "餐饮服务单位", "吴城镇", "吴城镇建设街8号", "", "", "存续",
     "2026-11-02"],
    ["舞阳县康宁大药房有限公司", PHARMACY, "", "零售药店", "北舞渡镇", "北舞渡镇中心街20号", "", "", "在业",
     "2026/11/03 10:30"],
]  # fmt: skip
COMPLAINT_HEADERS = ["工单编号", "来电时间", "诉求内容", "被反映单位", "被反映地址", "问题分类", "所属乡镇"]
COMPLAINT_ROWS = [
    ["GD20261127001", "2026-11-27 08:15:00", "在该店购买的面包发霉,电话13812345678",
     "某某食品", "人民路1号", "食品安全", "舞泉镇"],
    ["GD20261127002", "2026-11-27 09:00:00", "饭店后厨卫生差", "老王饭店", "建设街", "卫生状况", "吴城镇"],
    ["GD20261127003", "2026-11-27 10:00:00", "街边摊贩卖过期食品", "", "", "食品安全", "莲花镇"],
    ["GD20261127004", "2026-11-27 11:00:00", "王记饭店饭菜不新鲜", "王记饭店", "", "食品质量", "吴城镇"],
]  # fmt: skip


def write_xlsx(path: Path, headers: list[str], rows: list[list]) -> Path:
    wb = Workbook()
    ws = wb.active
    assert ws is not None  # a new workbook has one sheet
    ws.title = "导出"
    ws.append(headers)
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


def write_csv(path: Path, headers: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f)
        w.writerow(headers)
        w.writerows(rows)
    return path


INSPECTION_HEADERS = [
    "检查编号",
    "检查日期",
    "主体名称",
    "统一社会信用代码",
    "许可证编号",
    "所属乡镇",
    "经营地址",
    "监管事项编号",
    "检查部门",
    "检查人员",
    "检查结果",
    "问题代码",
    "发现问题",
    "问题严重程度",
]
INSPECTION_ROWS = [
    ["JC-2026-0001", "2026-11-20", "舞阳县某某食品有限公司", FOOD, "", "舞泉镇", "", "1", "县市场监管局、县应急管理局",
     "张三,李四", "不符合", "F-07", "冷库温度记录缺失", "严重"],
    ["舞市监检〔2026〕2号", "2026/11/21", "老王饭店", "", "JY24111210000002", "吴城镇", "", "1", "amr", "张三",
     "符合", "", "", ""],
]  # fmt: skip
