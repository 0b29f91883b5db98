// Flex Consumption plan and the Trawl Function App (Python 3.11), running as the user-assigned
// identity, deploying its package from a blob container with that identity, HTTPS and TLS 1.2 only.
// Every app setting comes from main.bicep (`appSettings`) except the Application Insights
// connection string, which is read here so it never travels through a deployment output. The
// settings are part of the site itself (siteConfig.appSettings), so the host never starts without them.

@description('Required. Name of the Flex Consumption plan.')
param planName string

@description('Required. Name of the Function App.')
param name string

@description('Optional. Location of the plan and the app.')
param location string = resourceGroup().location

@description('Optional. Tags applied to the plan and the app (the app also gets azd-service-name).')
param tags object = {}

@description('Required. Name azd knows the service by (tag azd-service-name), from azure.yaml.')
param azdServiceName string

@description('Required. Resource id of the user-assigned managed identity the app runs as.')
param identityResourceId string

@description('Required. Name of the storage account holding the deployment package container.')
param storageAccountName string

@description('Required. Blob container the deployment package is uploaded to.')
param deploymentContainerName string

@description('Required. Name of the Application Insights component the app reports to.')
param applicationInsightsName string

@description('Required. App settings (name to value); see main.bicep. Secure so that values never show in deployment history.')
@secure()
param appSettings object

@description('Optional. Python version of the Flex Consumption runtime.')
@allowed([
  '3.11'
])
param pythonVersion string = '3.11'

@description('Optional. Memory of each instance in MB: the instance sizes Flex Consumption offers.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Optional. Most instances the app scales out to (Flex Consumption accepts 40 to 1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Optional. Always-ready instances of the Durable Functions scale group (orchestrators and activities); 0 for none.')
@minValue(0)
param durableAlwaysReadyInstances int = 1

@description('Optional. Subnet (delegated to Microsoft.App/environments) for VNet integration; empty for none.')
param virtualNetworkSubnetId string = ''

@description('Required. Resource id of the Log Analytics workspace that receives the app\'s logs.')
param logAnalyticsWorkspaceId string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// As siteConfig.appSettings wants them; the loop runs over a parameter, so its length is known
// when the deployment starts.
var appSettingsList = [for setting in items(appSettings): {
  name: setting.key
  value: setting.value
}]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Zone redundancy of a Flex Consumption plan depends on the region and bills always-ready capacity; the app keeps no state on its instances (jobs live in PostgreSQL, work in storage queues), so a lost zone costs a retry, not data.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': azdServiceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityResourceId}': {}
    }
  }
  properties: {
    // checkov:skip=CKV_AZURE_17: Callers authenticate with Entra ID bearer tokens (validated by API Management and again by the app), not client certificates.
    // checkov:skip=CKV_AZURE_222: The API is public by design: API Management (Consumption/Developer, not VNet-injected) reaches it over the internet, and every call carries an Entra token the app validates itself.
    // checkov:skip=CKV_AZURE_212: Flex Consumption scales on demand; only the Durable group keeps always-ready instances (durableAlwaysReadyInstances), and queue messages and Durable state survive an instance loss, so no standby copies are paid for.
    // checkov:skip=CKV_AZURE_78: Flex Consumption rejects siteConfig.ftpsState (error 51021, "FTPS not supported" in Microsoft's Flex deprecations table); FTP is off through the ftp basicPublishingCredentialsPolicies below.
    // checkov:skip=CKV_AZURE_18: siteConfig is kept to what Microsoft's Flex Consumption samples set, so a property the plan rejects cannot fail the deployment; HTTP/2 between API Management and the app is a speed-up, not a control.
    // checkov:skip=CKV_AZURE_67: siteConfig is kept to what Microsoft's Flex Consumption samples set, so a property the plan rejects cannot fail the deployment; HTTP/2 between API Management and the app is a speed-up, not a control.
    // checkov:skip=CKV_AZURE_213: Flex Consumption replaces unhealthy instances itself; /api/health probes PostgreSQL and storage, so as a platform health check it would recycle every instance during a dependency outage.
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    // Flex Consumption rejects many siteConfig properties of other plans (ftpsState among them, error
    // 51021), so only the app settings and the minimum TLS version are set here; README.md lists the
    // latter under what to confirm on the first deployment.
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: concat(appSettingsList, [
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsights.properties.ConnectionString
        }
      ])
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityResourceId
          }
        }
      }
      // Microsoft's Durable Functions guidance for Flex Consumption: one always-ready instance for
      // the `durable` group, so orchestrations do not wait for a cold start.
      scaleAndConcurrency: {
        alwaysReady: (durableAlwaysReadyInstances > 0) ? [
          {
            name: 'durable'
            instanceCount: durableAlwaysReadyInstances
          }
        ] : []
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// azd deploys with an Entra token; basic (publishing profile) credentials stay off.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'function-app-to-log-analytics'
  scope: functionApp
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'FunctionAppLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

@description('The Function App\'s name.')
output name string = functionApp.name

@description('The Function App\'s resource id.')
output resourceId string = functionApp.id

@description('The Function App\'s default host name, e.g. func-trawl-abc.azurewebsites.net.')
output defaultHostName string = functionApp.properties.defaultHostName
