# Copyright 2020 Google LLC
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     https://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

# [START aiplatform_get_custom_job_sample]
from google.cloud import aiplatform
from parity_endpoint import EMULATOR  # hydra-vertex: the emulator's transport and token


def get_custom_job_sample(
    project: str,
    custom_job_id: str,
    location: str = "us-central1",
    api_endpoint: str = "us-central1-aiplatform.googleapis.com",
):
    # The AI Platform services require regional API endpoints.
    client_options = {"api_endpoint": api_endpoint}
    # Initialize client that will be used to create and send requests.
    # This client only needs to be created once, and can be reused for multiple requests.
    client = aiplatform.gapic.JobServiceClient(client_options=client_options, **EMULATOR)
    name = client.custom_job_path(project=project, location=location, custom_job=custom_job_id)
    response = client.get_custom_job(name=name)
    print("response:", response)


# [END aiplatform_get_custom_job_sample]
