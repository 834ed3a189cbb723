"""Words the simulated complaints, inspections and incidents are written with (foods, dishes,
drugs, products and their defects, procedures, symptoms, hospitals)."""

FOODS = "速冻水饺 汤圆 卤肉 火腿肠 酸奶 面包 月饼 挂面 粉条 牛奶 食用油 豆腐 猪肉 鸡蛋 辣条 饮料 冷冻鸡翅 烩面 凉皮 烧饼".split()
DISHES = "烩面 胡辣汤 凉拌菜 卤肉 羊肉汤 炒饭 烧烤 火锅 盒饭 凉皮 蒸菜 炸鸡".split()
FOREIGN = "头发 塑料片 虫子 钢丝球碎屑 烟头 玻璃碴".split()
DRUGS = "阿莫西林胶囊 头孢克肟片 布洛芬缓释胶囊 复方感冒灵颗粒 阿奇霉素片 降压药 胰岛素注射液 板蓝根颗粒".split()
RX = "阿莫西林 头孢 阿奇霉素 左氧氟沙星".split()
PRODUCTS = "电动车充电器 燃气灶 电线 电热水器 插线板 电动车电池 化肥 水泥".split()
DEFECTS = "外壳发烫冒烟 打不着火有燃气味 绝缘皮一碰就裂 漏电 标注功率与实际不符 结块板结".split()
PROCEDURES = "双眼皮手术 玻尿酸注射 光子嫩肤 隆鼻 脱毛 水光针".split()
BEAUTY_SYMPTOMS = "红肿化脓 两边不对称 局部坏死发黑 持续疼痛 过敏起疹".split()
SYMPTOMS = "腹痛、腹泻 呕吐、发烧 上吐下泻 肚子疼、头晕".split()
HOSPITALS = ("舞阳县人民医院", "舞阳县中医院", "乡镇卫生院", "村卫生室")
