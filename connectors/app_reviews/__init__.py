"""app_reviews: customer reviews of the bank's app from Apple's App Store (public RSS
feed or App Store Connect API), Google Play and Huawei AppGallery. One package, three
connectors (`app_store`, `google_play`, `huawei_appgallery`) sharing the HTTP client
(retries, 429 Retry-After), request signing and the cursor. See README.md."""
