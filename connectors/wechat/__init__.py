"""wechat: WeChat Official Account message push (`wechat`) and WeCom customer service
(`wecom`), one package because they share the signing and AES crypto. See README.md."""
